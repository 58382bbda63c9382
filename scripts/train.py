"""python scripts/train.py ... == tfxai train ... (same flags)."""
import sys

from tfxai.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
