"""``python -m rotator``: parse argv, run the command, exit with its code."""

from __future__ import annotations

import sys

from rotator.cli import main as cli_main


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli_main())


if __name__ == "__main__":
    main()
