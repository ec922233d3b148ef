"""`python -m crawler` runs the `batch-crawler` command."""

import sys

from .launch import main

sys.exit(main())
