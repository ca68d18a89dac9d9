"""A min/max pyramid over the steps of a run, so any zoom level is drawn from a few blocks.

Reading a million steps costs SQLite ~0.45 s and Python far more, so the dashboard reads
each step once, as min/max blocks of ``base`` steps, and merges blocks upward by
``fanout`` into coarser levels. Drawing a window then touches at most ``fanout`` blocks
per screen column whatever the zoom, and a follow refresh only re-reads the newest block.
Windows finer than one block per column are read directly from the file instead (they
span few steps, so the query is cheap).

Pure and single-threaded: ``tui.model.RunModel`` holds the lock.
"""

from __future__ import annotations

from collections.abc import Sequence

from .feed import Block, merge_blocks


class MinMaxIndex:
    """Levels of aligned blocks; level ``k`` blocks span ``base * fanout**k`` steps.

    Block ``i`` of a level covers ``origin + i*size <= step < origin + (i+1)*size``; the
    last block of each level may be partial and is replaced when more steps arrive.
    """

    def __init__(self, origin: int, base: int = 256, fanout: int = 8, depth: int = 6) -> None:
        if base < 1 or fanout < 2 or depth < 1:
            raise ValueError("base >= 1, fanout >= 2 and depth >= 1 are required")
        self.origin = origin
        self.base = base
        self.fanout = fanout
        self.levels: list[list[Block]] = [[] for _ in range(depth)]
        self.covered_to = origin  # steps < covered_to have been read (last block may grow)

    def size(self, level: int) -> int:
        return self.base * self.fanout**level

    def resume_at(self) -> int:
        """Where the next read should start: the start of the last, possibly partial, block."""
        blocks = self.levels[0]
        if not blocks:
            return self.origin
        return blocks[-1].start

    def update(self, blocks: Sequence[Block]) -> None:
        """Store level-0 ``blocks`` (aligned, consecutive), replacing any at the same place."""
        if not blocks:
            return
        base = self.levels[0]
        first = (blocks[0].start - self.origin) // self.base
        if first < 0 or first > len(base):
            raise ValueError("blocks must continue the index without a gap")
        del base[first:]
        base.extend(blocks)
        self.covered_to = max(self.covered_to, blocks[-1].stop)
        changed = first
        for level in range(1, len(self.levels)):
            below = self.levels[level - 1]
            above = self.levels[level]
            changed //= self.fanout
            del above[changed:]
            for j in range(changed, -(-len(below) // self.fanout)):
                above.append(merge_blocks(below[j * self.fanout : (j + 1) * self.fanout]))

    def query(self, lo: int, hi: int, buckets: int) -> list[Block] | None:
        """About ``buckets`` merged blocks covering steps ``lo..hi`` (inclusive).

        Uses the coarsest level that still gives at least one block per bucket. Returns
        None when even level 0 is too coarse for the window (read it directly instead) or
        when the window reaches past what has been indexed.
        """
        if hi < lo or hi >= self.covered_to or lo < self.origin or buckets < 1:
            return None
        span = hi - lo + 1
        level = -1
        for k in range(len(self.levels) - 1, -1, -1):
            if span // self.size(k) >= buckets:
                level = k
                break
        if level < 0:
            return None
        size = self.size(level)
        blocks = self.levels[level]
        first = (lo - self.origin) // size
        last = min((hi - self.origin) // size, len(blocks) - 1)
        chosen = blocks[first : last + 1]
        if not chosen:
            return None
        groups = min(buckets, len(chosen))
        out = []
        for g in range(groups):
            a = g * len(chosen) // groups
            b = (g + 1) * len(chosen) // groups
            out.append(merge_blocks(chosen[a:b]) if b - a > 1 else chosen[a])
        return out
