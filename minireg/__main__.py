"""``python -m minireg ...``: the command line (see minireg/cli.py; ``minireg demo`` trains a seed
failure case and says what happened)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
