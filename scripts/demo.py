"""python scripts/demo.py ... == tfxai demo ... (same flags)."""
import sys

from tfxai.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
