"""IntervalSet: the in-memory form of one BED file.

Coordinates are 0-based, half-open ``[start, end)`` as in BED. Chromosomes are
stored as int32 codes into ``chroms`` (a tuple of names); two sets built against
the same genome share the genome's chromosome order, so their codes compare
directly. Intervals keep file line order (seqpare's tie rules depend on it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class IntervalSet:
    chroms: tuple[str, ...]  # code -> chromosome name
    chrom: np.ndarray  # int32 codes, one per interval, file order
    start: np.ndarray  # int64
    end: np.ndarray  # int64

    def __post_init__(self) -> None:
        n = len(self.chrom)
        if not (len(self.start) == len(self.end) == n):
            raise ValueError("chrom, start and end must have the same length")

    def __len__(self) -> int:
        return int(len(self.chrom))

    @classmethod
    def from_tuples(cls, rows, chroms: tuple[str, ...] | None = None) -> "IntervalSet":
        """Build from ``[(chrom, start, end), ...]`` (tests, small examples)."""
        rows = list(rows)
        names = list(chroms) if chroms is not None else []
        code = {c: i for i, c in enumerate(names)}
        cc = []
        for c, _, _ in rows:
            if c not in code:
                if chroms is not None:
                    raise KeyError(f"chromosome {c!r} not in {chroms}")
                code[c] = len(names)
                names.append(c)
            cc.append(code[c])
        return cls(
            tuple(names),
            np.asarray(cc, dtype=np.int32),
            np.asarray([r[1] for r in rows], dtype=np.int64),
            np.asarray([r[2] for r in rows], dtype=np.int64),
        )

    def with_chroms(self, chroms: tuple[str, ...]) -> "IntervalSet":
        """Re-code onto another chromosome table (names missing there get new codes)."""
        names = list(chroms)
        code = {c: i for i, c in enumerate(names)}
        remap = np.empty(len(self.chroms), dtype=np.int32)
        for i, c in enumerate(self.chroms):
            if c not in code:
                code[c] = len(names)
                names.append(c)
            remap[i] = code[c]
        return IntervalSet(tuple(names), remap[self.chrom] if len(self) else self.chrom, self.start, self.end)

    @property
    def lengths(self) -> np.ndarray:
        return self.end - self.start

    def bp_covered(self) -> int:
        """Bases covered by the union of the intervals (overlaps counted once)."""
        if len(self) == 0:
            return 0
        order = np.lexsort((self.start, self.chrom))
        c, s, e = self.chrom[order].astype(np.int64), self.start[order], self.end[order]
        # one running maximum over all chromosomes: offsetting each chromosome's
        # coordinates by code << 40 keeps the maxima from leaking across chromosomes
        off = c << np.int64(40)
        ce = np.maximum.accumulate(e + off) - off
        first = np.concatenate(([True], c[1:] != c[:-1]))
        prev_end = np.where(first, s, np.concatenate(([0], ce[:-1])))
        return int(np.maximum(0, ce - np.maximum(s, prev_end)).sum())

    def content_hash(self) -> str:
        """Hash of the interval multiset in a canonical order (names, not codes).

        Line order, extra columns and headers do not change it, so the same
        intervals re-ingested from a re-sorted or re-compressed file are
        recognised as already indexed.
        """
        h = hashlib.sha256()
        # rank the chromosomes the set uses by name, so the hash depends neither on
        # the code table (genome order, file order) nor on unused names
        used_codes = np.unique(self.chrom)
        used = [self.chroms[i] for i in used_codes]
        rank = np.zeros(len(self.chroms), dtype=np.int64)
        rank[used_codes] = np.argsort(np.argsort(np.asarray(used, dtype=str))) if used else []
        r = rank[self.chrom]
        order = np.lexsort((self.end, self.start, r))
        h.update("\0".join(sorted(used)).encode())
        h.update(np.ascontiguousarray(r[order], dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(self.start[order], dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(self.end[order], dtype=np.int64).tobytes())
        return h.hexdigest()
