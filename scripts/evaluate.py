"""python scripts/evaluate.py ... == tfxai evaluate ... (same flags)."""
import sys

from tfxai.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
