"""``python -m delpyro``: the command line (see delpyro.cli)."""

import sys

from delpyro.cli import main

if __name__ == "__main__":
    sys.exit(main())
