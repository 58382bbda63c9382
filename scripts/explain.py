"""``python scripts/explain.py --checkpoint M --image X --output-dir O``: same as ``tfxai explain``."""
import sys

from tfxai.cli import main

if __name__ == "__main__":
    sys.exit(main(["explain", *sys.argv[1:]]))
