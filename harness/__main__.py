"""``python -m harness VERB ...``; see ``python -m harness --help``."""

from __future__ import annotations

import sys

from harness.cli import main

if __name__ == "__main__":
    sys.exit(main())
