"""``python -m virtrio`` and the ``virtrio`` script."""

import sys

from virtrio.engine._cli import main

if __name__ == "__main__":
    sys.exit(main())
