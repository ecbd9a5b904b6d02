"""``python -m reference.train``."""
import sys

from reference.train.entry import main

if __name__ == "__main__":
    sys.exit(main())
