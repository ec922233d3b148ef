#!/bin/sh
# A sync every 15 minutes from cron, logs as JSON lines in a file:
#   */15 * * * *  OPENAI_API_KEY=sk-... /opt/batch-crawler/examples/cron.sh >>/var/log/batch-crawler.log 2>&1
# flock -n: while one sync still runs, the next is skipped rather than queued behind it.
# Exit 0 for what the next run gets past by itself; anything else makes cron mail the log.
set -u
db="${BATCH_CRAWLER_DB:-batches.db}"
exec 9>"$db.cron-lock"
if ! flock -n 9; then
    # A line like batch-crawler's own JSON log lines, for the same log reader.
    printf '{"ts": "%s", "level": "info", "event": "skipped", "message": "%s"}\n' \
        "$(date -u +%Y-%m-%dT%H:%M:%S.000Z)" "the previous sync still runs" >&2
    exit 0
fi
batch-crawler sync --db "$db" --log-format json --max-seconds 840 -q
code=$?
case $code in
    0 | 3) exit 0 ;;  # done, or the time budget spent: the next run continues
    75 | 130 | 143) exit 0 ;;  # transient, or stopped: the next run resumes
    *) exit "$code" ;;  # 1, 2, 4: a refused key, a bad setting, a broken database
esac
