"""python scripts/inference.py ... == tfxai predict ... (same flags)."""
import sys

from tfxai.cli import main

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
