"""``python -m ddnn``: see :mod:`ddnn.cli`."""

import sys

from ddnn.cli import main

if __name__ == "__main__":
    sys.exit(main())
