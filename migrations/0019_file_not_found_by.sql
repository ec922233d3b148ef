-- The account whose API answered a file's last 404: one account's route may lack the files
-- (a gateway answering 404 for every file) while another account listing the batch reads
-- them. After an account's 404, the other account of the run listing the batch asks next,
-- so a file is taken as expired only once each has answered 404 (not_found_runs still
-- counts the syncs in a row). NULL when the last answer was no 404.
ALTER TABLE batch_files ADD COLUMN not_found_by TEXT;
