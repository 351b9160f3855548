"""``python -m app``: start the demonstrator on the shipped Bergwald scenario (offline)."""

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
