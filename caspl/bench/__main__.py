"""Entry point of `python -m caspl.bench`."""

import sys

from caspl.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
