"""``python -m gsbsim``: the same command line as the ``gsbsim`` console script."""
import sys

from gsbsim.cli.app import main

if __name__ == "__main__":
    sys.exit(main())
