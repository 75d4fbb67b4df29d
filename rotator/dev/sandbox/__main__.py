"""``python -m rotator.dev.sandbox ...``: the same as ``rotator sandbox ...``."""

import sys

from rotator.dev.sandbox.cli import main

raise SystemExit(main(sys.argv[1:]))
