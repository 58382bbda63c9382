"""`python scripts/prune.py ...` is `tfxai prune ...` (see `tfxai prune --help`)."""
import sys

from tfxai.cli import main

if __name__ == "__main__":
    sys.exit(main(["prune", *sys.argv[1:]]))
