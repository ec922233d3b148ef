"""`python -m crawler` runs the `batch-crawler` command."""

import sys

from .cli import main

sys.exit(main())
