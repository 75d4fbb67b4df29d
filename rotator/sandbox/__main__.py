"""``python -m rotator.sandbox ...``: the same as ``rotator sandbox ...``."""

import sys

from rotator.sandbox.cli import main

raise SystemExit(main(sys.argv[1:]))
