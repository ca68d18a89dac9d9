"""``python -m memwatch`` is the CLI (so ``torchrun -m memwatch run train.py`` works)."""

from __future__ import annotations

import sys

from memwatch.cli import main

if __name__ == "__main__":
    sys.exit(main())
