"""``python -m memwatch`` is the CLI (so ``torchrun -m memwatch run train.py`` works)."""

from __future__ import annotations

from memwatch.cli import console_main

if __name__ == "__main__":
    console_main()
