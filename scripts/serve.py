"""python scripts/serve.py ... == tfxai serve ... (same flags)."""
import sys

from tfxai.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
