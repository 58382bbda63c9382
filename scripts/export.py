"""`python scripts/export.py ...` is `tfxai export ...` (see `tfxai export --help`)."""
import sys

from tfxai.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
