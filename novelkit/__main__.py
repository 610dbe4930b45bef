"""``python -m novelkit``: the same command, options and exit codes as ``novelkit``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
