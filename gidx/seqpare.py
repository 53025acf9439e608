"""Exact seqpare similarity: one pair, or one query against many records.

Conventions (they reproduce the reference tool, deepstanding/seqpare @ a0a2d20,
``seqpare TARGET QUERY``; the fixtures in ``tests/data/seqpare/`` pin them):

* **Direction.** The *target* is the database side, the *query* the other. In gidx
  a query file Q against a stored record R is ``seqpare R Q``: target = record.
* **Overlap** of target ``t`` and query ``q`` on the same chromosome (exact,
  case-sensitive name; gidx compares genome codes): ``t.start < q.end and
  t.end > q.start``. Touching intervals do not overlap; a zero-length interval
  overlaps only an interval that strictly contains its position.
* **J** (Jaccard of two intervals) in float32, as the reference computes it: the
  three integer lengths converted to float32, ``(|q| + |t|) - |q∩t|`` in float32,
  then a float32 division. A zero-length interval has J = 0. A pair is
  *acceptable* when ``J > float32(1e-7)``.
* **Matching** (one-to-one, per chromosome) is the reference's deferred acceptance:
  queries are processed one at a time in ascending start, equal starts in file
  order. A query goes to the acceptable target with the largest J among targets
  that are free or held with a strictly smaller J; among equal-J best targets it
  takes the one with the largest start, and for equal starts the one later in the
  target file. A free target takes it; a held target drops its query, which
  immediately searches again the same way (chains). A query that finds nothing
  stays unmatched. A target never switches to an equal J.
* **Beyond 64 intervals per chromosome** the reference lays intervals out with an
  unstable radix sort and splits them into AIList components, and its tie
  outcomes follow that layout (an artefact). gidx applies the same rule as for at
  most 64 intervals, for every chromosome size: deterministic, independent of how
  the records are stored, and identical to the reference whenever no interval has
  two acceptable partners with exactly equal J.
* **teo** = sum of the matched J, accumulated in float32 in *target order*:
  chromosomes in the order of their first line in the target, then intervals by
  start, equal starts in file order (the reference's order for <= 64 intervals per
  chromosome). **S** = ``teo / (N_t + N_q - teo)`` in double. One empty side gives
  S = 0, both empty give NaN.
* **Counting.** N counts every interval given (duplicates, zero-length, intervals
  on chromosomes the other side lacks). ``tc`` counts every overlapping pair,
  acceptable or not. IntervalSets are assumed valid (start <= end); the BED reader
  drops ``start > end`` lines, as the reference does.

Two interval-pair finders feed one matching kernel (``_match_record``):

* :class:`OverlapIndex` search over all records: per segment, every interval is
  also stored in a *class layout*, grouped by chromosome and length class
  (``bit_length(length)``: within a class the longest interval is less than twice
  the shortest; zero-length intervals have their own class) and sorted by start.
  The targets overlapping ``q`` in a class with longest interval ``maxlen`` lie in
  ``start ∈ (q.start - maxlen, q.end)``, a window found by a galloping pointer
  that only moves forward as the (sorted) queries advance. A few huge intervals
  sit in their own class and never widen the windows of the others.
* a *sweep join* of the sorted query against one record's own intervals (its
  *record layout*, target order), used by :func:`pair` and by searches restricted
  to a few candidate records (``records=``), so that cost scales with the
  candidates, not with the index.

Persistence: an index folder holds immutable segments ``seg-<time>-<uuid>/`` (one
per ingest batch; ``.npy`` files, memory-mapped on open), written under a
temporary name and renamed atomically. The catalog says which records exist:
records it does not list are ignored (tombstones, orphans of a crashed ingest),
and a record found in several segments is read from the newest one only.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from .intervals import IntervalSet

ACCEPT_J = np.float32(1e-7)  # a pair matches only if its float32 J is strictly above this
SEGMENT_PREFIX = "seg-"
_TMP_PREFIX = ".tmp-"
_FORMAT_VERSION = 1
# Array files of a segment: record layout (target order, records contiguous) and
# class layout (chromosome, length class, start).
_SEGMENT_ARRAYS = (
    "record_id", "rec_offsets", "chrom", "start", "end",
    "blk_chrom", "blk_offsets", "blk_maxlen", "cls_start", "cls_end", "cls_rec", "cls_tloc",
)


@dataclass(frozen=True)
class PairResult:
    """seqpare of one target against one query."""

    n_t: int  # target interval count
    n_q: int  # query interval count
    teo: float  # total effective overlap (the reference's float32 sum, as a double)
    s: float  # similarity S in [0, 1]; NaN when both sets are empty
    tc: int  # overlapping (target, query) interval pairs


@dataclass(frozen=True)
class SearchResult:
    """seqpare of one query against the records it overlaps, sorted by record id.

    Lists every record with at least one overlapping pair (``tc >= 1``, even if no
    pair is acceptable and ``teo == 0``); records not listed have teo = S = tc = 0.
    """

    n_q: int
    record_id: np.ndarray  # int64
    n_t: np.ndarray  # int64, every interval of the record
    teo: np.ndarray  # float64 (float32 values)
    s: np.ndarray  # float64
    tc: np.ndarray  # int64

    def __len__(self) -> int:
        return int(len(self.record_id))


def similarity(teo, n_t, n_q):
    """S = teo / (N_t + N_q - teo) in double; 0 when exactly one side is empty, NaN when both are."""
    teo = np.asarray(teo, dtype=np.float64)
    denom = np.asarray(n_t, dtype=np.float64) + np.asarray(n_q, dtype=np.float64) - teo
    with np.errstate(invalid="ignore", divide="ignore"):
        return teo / denom


# ---------------------------------------------------------------------------
# numba kernels


@numba.njit(cache=True, inline="always")
def _jaccard32(qs, qe, ts, te):
    """float32 J of two overlapping intervals, operation for operation as the reference."""
    inter = np.float32(min(qe, te) - max(qs, ts))
    return inter / ((np.float32(qe - qs) + np.float32(te - ts)) - inter)


@numba.njit(cache=True, nogil=True)
def _grow(a, n):
    out = np.empty(max(2 * a.shape[0], n), a.dtype)
    out[: a.shape[0]] = a
    return out


@numba.njit(cache=True, nogil=True)
def _match_record(pq, pt, pj, a, b, run_lo, run_hi, held_j, held_q, touched):
    """Deferred-acceptance matching of one record; returns teo (float32).

    ``pq[a:b], pt[a:b], pj[a:b]``: the record's acceptable pairs (query rank, target
    position in target order, J), grouped by query, each chromosome's queries in
    ascending rank (= processing order). Scratch: ``run_lo``/``run_hi`` indexed by
    query rank, ``held_j`` (zero = free; accepted J are > 0) / ``held_q`` /
    ``touched`` indexed by target position; ``held_j`` is left all zero again.
    """
    k = a
    while k < b:  # where each query's candidates are
        q = pq[k]
        run_lo[q] = k
        while k < b and pq[k] == q:
            k += 1
        run_hi[q] = k
    n_touched = 0
    t_min = 2147483647
    t_max = -1
    k = a
    while k < b:
        q = pq[k]
        k = run_hi[q]
        cur = q
        while cur >= 0:  # cur: the query looking for a target; a displaced one looks again
            best = -1
            best_j = np.float32(0.0)
            for p in range(run_lo[cur], run_hi[cur]):
                j = pj[p]
                t = pt[p]
                # larger J wins; equal J: the later target in target order (larger start,
                # then later line), which the reference's descending scan meets first
                if j > best_j or (j == best_j and t > best):
                    h = held_j[t]
                    if h == 0 or j > h:
                        best = t
                        best_j = j
            if best < 0:
                break
            if held_j[best] == 0:
                displaced = -1
                touched[n_touched] = best
                n_touched += 1
                t_min = min(t_min, best)
                t_max = max(t_max, best)
            else:
                displaced = held_q[best]
            held_j[best] = best_j
            held_q[best] = cur
            cur = displaced
    # teo in target order, in float32 as the reference sums it; free targets hold 0,
    # and adding 0 leaves a float32 sum unchanged, so a dense scan is exact
    teo = np.float32(0.0)
    if n_touched == 0:
        return teo
    if t_max - t_min < 16 * n_touched + 64:
        for t in range(t_min, t_max + 1):
            teo += held_j[t]
            held_j[t] = 0
    else:
        order = np.sort(touched[:n_touched])
        for i in range(n_touched):
            teo += held_j[order[i]]
            held_j[order[i]] = 0
    return teo


@numba.njit(cache=True, nogil=True)
def _match_grouped(recs, rec_pair_off, pq, pt, pj, n_q, max_nt):
    """teo of each record in ``recs`` from pairs grouped by record (``rec_pair_off``)."""
    run_lo = np.empty(n_q, np.int64)
    run_hi = np.empty(n_q, np.int64)
    held_j = np.zeros(max_nt, np.float32)
    held_q = np.empty(max_nt, np.int32)
    touched = np.empty(max_nt, np.int32)
    teo = np.zeros(recs.shape[0], np.float32)
    for i in range(recs.shape[0]):
        r = recs[i]
        teo[i] = _match_record(pq, pt, pj, rec_pair_off[r], rec_pair_off[r + 1],
                               run_lo, run_hi, held_j, held_q, touched)
    return teo


@numba.njit(cache=True, nogil=True)
def _first_greater(a, lo, hi, key):
    """First index in sorted ``a[lo:hi]`` whose value is > key (hi if none)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] <= key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, nogil=True)
def _class_join(q_chrom, q_start, q_end, i0, i1, chrom_blk_lo, chrom_blk_hi, blk_off, blk_maxlen,
                t_start, t_end, t_rec, t_loc, rec_ok):
    """All overlaps of sorted queries ``[i0, i1)`` with the class layout of one segment.

    Returns the acceptable pairs in query order (record, query rank, target position,
    J) and, per record, the overlapping-pair count (tc) and acceptable-pair count.
    Records with ``rec_ok`` false are skipped.
    """
    n_rec = rec_ok.shape[0]
    tc = np.zeros(n_rec, np.int64)
    n_acc = np.zeros(n_rec, np.int64)
    cap = max(1024, 8 * (i1 - i0))
    pr_rec = np.empty(cap, np.int32)
    pr_q = np.empty(cap, np.int32)
    pr_t = np.empty(cap, np.int32)
    pr_j = np.empty(cap, np.float32)
    n = 0
    ptr = np.empty(blk_maxlen.shape[0], np.int64)
    n_codes = chrom_blk_lo.shape[0]
    i = i0
    while i < i1:
        c = q_chrom[i]
        run_end = i
        while run_end < i1 and q_chrom[run_end] == c:
            run_end += 1
        if c < 0 or c >= n_codes or chrom_blk_lo[c] == chrom_blk_hi[c]:
            i = run_end
            continue
        b0 = chrom_blk_lo[c]
        b1 = chrom_blk_hi[c]
        for b in range(b0, b1):
            ptr[b] = _first_greater(t_start, blk_off[b], blk_off[b + 1], q_start[i] - blk_maxlen[b])
        for k in range(i, run_end):
            qs = q_start[k]
            qe = q_end[k]
            for b in range(b0, b1):
                hi = blk_off[b + 1]
                key = qs - blk_maxlen[b]
                p = ptr[b]
                if p < hi and t_start[p] <= key:
                    # gallop: the window start moves forward with the sorted queries
                    step = 1
                    while p + step < hi and t_start[p + step] <= key:
                        step <<= 1
                    p = _first_greater(t_start, p + (step >> 1), min(p + step, hi), key)
                    ptr[b] = p
                while p < hi and t_start[p] < qe:
                    te = t_end[p]
                    if te > qs:
                        r = t_rec[p]
                        if rec_ok[r]:
                            tc[r] += 1
                            j = _jaccard32(qs, qe, t_start[p], te)
                            if j > ACCEPT_J:
                                if n == pr_q.shape[0]:
                                    pr_rec = _grow(pr_rec, n + 1)
                                    pr_q = _grow(pr_q, n + 1)
                                    pr_t = _grow(pr_t, n + 1)
                                    pr_j = _grow(pr_j, n + 1)
                                pr_rec[n] = r
                                pr_q[n] = k
                                pr_t[n] = t_loc[p]
                                pr_j[n] = j
                                n += 1
                                n_acc[r] += 1
                    p += 1
        i = run_end
    return pr_rec[:n], pr_q[:n], pr_t[:n], pr_j[:n], tc, n_acc


@numba.njit(cache=True, nogil=True)
def _group_by_record(pr_rec, pr_q, pr_t, pr_j, n_acc):
    """Stable counting sort of pairs by record: query order is kept within a record."""
    n_rec = n_acc.shape[0]
    off = np.zeros(n_rec + 1, np.int64)
    for r in range(n_rec):
        off[r + 1] = off[r] + n_acc[r]
    pos = off[:-1].copy()
    n = pr_rec.shape[0]
    out_q = np.empty(n, np.int32)
    out_t = np.empty(n, np.int32)
    out_j = np.empty(n, np.float32)
    for k in range(n):
        r = pr_rec[k]
        d = pos[r]
        pos[r] = d + 1
        out_q[d] = pr_q[k]
        out_t[d] = pr_t[k]
        out_j[d] = pr_j[k]
    return off, out_q, out_t, out_j


@numba.njit(cache=True, nogil=True)
def _sweep_records(recs, rec_off, t_chrom, t_start, t_end, q_start, q_end, q_run_lo, q_run_hi, n_q, max_nt):
    """teo and tc of each record in ``recs`` by a sweep join with the sorted query.

    ``q_run_lo[c]:q_run_hi[c]`` is the query's run on chromosome code c. Per record
    chromosome run (sorted by start), each query meets the targets that started at
    or before it and are still open (an active list, pruned as it is scanned) plus
    the targets starting inside it; pairs come out grouped by query, in query order.
    Cost: intervals of the record + queries on its chromosomes + overlapping pairs.
    """
    teo = np.zeros(recs.shape[0], np.float32)
    tc = np.zeros(recs.shape[0], np.int64)
    run_lo = np.empty(n_q, np.int64)
    run_hi = np.empty(n_q, np.int64)
    held_j = np.zeros(max_nt, np.float32)
    held_q = np.empty(max_nt, np.int32)
    touched = np.empty(max_nt, np.int32)
    active = np.empty(max_nt, np.int64)
    cap = 1024
    pq = np.empty(cap, np.int32)
    pt = np.empty(cap, np.int32)
    pj = np.empty(cap, np.float32)
    n_codes = q_run_lo.shape[0]
    for ri in range(recs.shape[0]):
        r = recs[ri]
        a = rec_off[r]
        b = rec_off[r + 1]
        n = 0
        n_tc = 0
        ta = a
        while ta < b:
            c = t_chrom[ta]
            tb = ta
            while tb < b and t_chrom[tb] == c:
                tb += 1
            if c < n_codes and q_run_lo[c] < q_run_hi[c]:
                n_active = 0
                k = ta
                for i in range(q_run_lo[c], q_run_hi[c]):
                    qs = q_start[i]
                    qe = q_end[i]
                    while k < tb and t_start[k] <= qs:
                        active[n_active] = k
                        n_active += 1
                        k += 1
                    # active targets started at or before qs; keep those still open
                    w = 0
                    for x in range(n_active):
                        t = active[x]
                        if t_end[t] > qs:
                            active[w] = t
                            w += 1
                    n_active = w
                    # candidates: open active targets (start < qe fails only for a
                    # zero-length query at their start) and targets starting in (qs, qe)
                    x = 0
                    p = k
                    while True:
                        if x < n_active:
                            t = active[x]
                            x += 1
                            if t_start[t] >= qe:
                                continue
                        elif p < tb and t_start[p] < qe:
                            t = p
                            p += 1
                        else:
                            break
                        n_tc += 1
                        j = _jaccard32(qs, qe, t_start[t], t_end[t])
                        if j > ACCEPT_J:
                            if n == pq.shape[0]:
                                pq = _grow(pq, n + 1)
                                pt = _grow(pt, n + 1)
                                pj = _grow(pj, n + 1)
                            pq[n] = i
                            pt[n] = t - a
                            pj[n] = j
                            n += 1
            ta = tb
        tc[ri] = n_tc
        teo[ri] = _match_record(pq, pt, pj, 0, n, run_lo, run_hi, held_j, held_q, touched)
    return teo, tc


# ---------------------------------------------------------------------------
# layouts


def _target_order(record_index: np.ndarray, chrom: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Permutation to target order: records contiguous (in ``record_index`` order), then
    chromosomes by first line in the record, then start, ties in file order."""
    n = len(chrom)
    if n == 0:
        return np.zeros(0, np.int64)
    by_rec = np.argsort(record_index, kind="stable")
    r, c = record_index[by_rec], chrom[by_rec].astype(np.int64)
    # first row of each (record, chromosome) pair; rows of a record are contiguous, so
    # sorting by that row number orders records, then chromosomes by appearance
    n_codes = int(c.max()) + 1
    pair_key = r.astype(np.int64) * n_codes + c
    _, first, inverse = np.unique(pair_key, return_index=True, return_inverse=True)
    within = np.lexsort((start[by_rec], first[inverse]))
    return by_rec[within]


def _build_segment_arrays(record_id, chrom, start, end) -> dict[str, np.ndarray]:
    """Record layout and class layout of a batch of records' intervals."""
    record_id = np.asarray(record_id, dtype=np.int64)
    chrom = np.asarray(chrom, dtype=np.int32)
    start = np.asarray(start, dtype=np.int64)
    end = np.asarray(end, dtype=np.int64)
    if not (len(record_id) == len(chrom) == len(start) == len(end)):
        raise ValueError("record_id, chrom, start and end must have the same length")
    if np.any(start > end) or np.any(start < 0) or np.any(chrom < 0):
        raise ValueError("intervals need 0 <= start <= end and chromosome codes >= 0")
    ids, rec_index = np.unique(record_id, return_inverse=True)
    order = _target_order(rec_index, chrom, start)
    chrom, start, end, rec_index = chrom[order], start[order], end[order], rec_index[order]
    counts = np.bincount(rec_index, minlength=len(ids))
    rec_offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    tloc = (np.arange(len(chrom), dtype=np.int64) - rec_offsets[rec_index]).astype(np.int32)

    length = end - start
    # length class = bit_length(length): 0 for zero length, k for 2^(k-1) <= length < 2^k
    length_class = np.zeros(len(length), np.int64)
    pos = length > 0
    length_class[pos] = np.floor(np.log2(length[pos])).astype(np.int64) + 1
    cls_order = np.lexsort((start, length_class, chrom))
    blk_key = chrom[cls_order].astype(np.int64) * 64 + length_class[cls_order]
    if len(blk_key):
        blk_first = np.flatnonzero(np.concatenate(([True], blk_key[1:] != blk_key[:-1])))
        blk_maxlen = np.maximum.reduceat(length[cls_order], blk_first).astype(np.int64)
    else:
        blk_first = np.zeros(0, np.int64)
        blk_maxlen = np.zeros(0, np.int64)
    return {
        "record_id": ids.astype(np.int64),
        "rec_offsets": rec_offsets,
        "chrom": chrom,
        "start": start,
        "end": end,
        "blk_chrom": chrom[cls_order][blk_first].astype(np.int32),
        "blk_offsets": np.concatenate((blk_first, [len(chrom)])).astype(np.int64),
        "blk_maxlen": blk_maxlen,
        "cls_start": start[cls_order],
        "cls_end": end[cls_order],
        "cls_rec": rec_index[cls_order].astype(np.int32),
        "cls_tloc": tloc[cls_order],
    }


class _Segment:
    """One segment's arrays plus which of its records are live."""

    def __init__(self, arrays: dict[str, np.ndarray], name: str = ""):
        self.name = name
        for k in _SEGMENT_ARRAYS:
            setattr(self, k, arrays[k])
        self.n_t = np.diff(self.rec_offsets)
        self.alive = np.ones(len(self.record_id), dtype=np.bool_)
        n_codes = int(self.blk_chrom.max()) + 1 if len(self.blk_chrom) else 0
        codes = np.arange(n_codes)
        self.chrom_blk_lo = np.searchsorted(self.blk_chrom, codes, side="left").astype(np.int64)
        self.chrom_blk_hi = np.searchsorted(self.blk_chrom, codes, side="right").astype(np.int64)
        # average blocks per chromosome: per-query work of the class join
        self.blocks_per_chrom = len(self.blk_chrom) / max(1, len(np.unique(self.blk_chrom)))

    @classmethod
    def load(cls, path: Path) -> "_Segment":
        # np.asarray: a plain read-only ndarray view of the memmap (what numba takes)
        arrays = {k: np.asarray(np.load(path / f"{k}.npy", mmap_mode="r")) for k in _SEGMENT_ARRAYS}
        return cls(arrays, path.name)

    @property
    def max_nt(self) -> int:
        return int(self.n_t.max()) if len(self.n_t) else 0

    def nbytes(self) -> int:
        return sum(getattr(self, k).nbytes for k in _SEGMENT_ARRAYS)


@dataclass
class _Query:
    """A query sorted into processing order: chromosome runs, ascending start, ties in file order."""

    n: int
    chrom: np.ndarray
    start: np.ndarray
    end: np.ndarray
    run_lo: np.ndarray  # by chromosome code: first rank of its run (run_lo == run_hi: none)
    run_hi: np.ndarray

    @classmethod
    def from_set(cls, query: IntervalSet) -> "_Query":
        chrom = np.asarray(query.chrom, dtype=np.int32)
        start = np.asarray(query.start, dtype=np.int64)
        end = np.asarray(query.end, dtype=np.int64)
        n = len(chrom)
        if n and not _is_processing_order(chrom, start):
            order = np.lexsort((start, chrom))  # stable: equal starts keep file order
            chrom, start, end = chrom[order], start[order], end[order]
        n_codes = int(chrom.max()) + 1 if n else 0
        run_lo = np.zeros(n_codes, np.int64)
        run_hi = np.zeros(n_codes, np.int64)
        if n:
            first = np.flatnonzero(np.concatenate(([True], chrom[1:] != chrom[:-1])))
            last = np.concatenate((first[1:], [n]))
            run_lo[chrom[first]] = first
            run_hi[chrom[first]] = last
        return cls(n, chrom, start, end, run_lo, run_hi)


def _is_processing_order(chrom: np.ndarray, start: np.ndarray) -> bool:
    """Each chromosome in one block with non-decreasing starts (most BED files)."""
    same = chrom[1:] == chrom[:-1]
    if np.any(same & (start[1:] < start[:-1])):
        return False
    n_blocks = 1 + int(np.count_nonzero(~same))
    return n_blocks == len(np.unique(chrom))


def _split_even(weights: np.ndarray, parts: int) -> list[np.ndarray]:
    """Split indices 0..len-1 into at most ``parts`` contiguous groups of similar total weight."""
    if parts <= 1 or len(weights) <= 1:
        return [np.arange(len(weights))]
    cum = np.cumsum(weights, dtype=np.float64)
    cuts = np.searchsorted(cum, cum[-1] * np.arange(1, parts) / parts)
    return [g for g in np.split(np.arange(len(weights)), cuts) if len(g)]


# ---------------------------------------------------------------------------
# public API


def pair(target: IntervalSet, query: IntervalSet) -> PairResult:
    """``seqpare target query``: target = database side (a record), query = the other."""
    query = query.with_chroms(target.chroms) if query.chroms != target.chroms else query
    n_t, n_q = len(target), len(query)
    if n_t == 0 or n_q == 0:
        return PairResult(n_t, n_q, 0.0, float(similarity(0.0, n_t, n_q)), 0)
    seg = _Segment(_build_segment_arrays(np.zeros(n_t, np.int64), target.chrom, target.start, target.end))
    q = _Query.from_set(query)
    teo, tc = _sweep_records(np.zeros(1, np.int64), seg.rec_offsets, seg.chrom, seg.start, seg.end,
                             q.start, q.end, q.run_lo, q.run_hi, q.n, n_t)
    teo = float(teo[0])
    return PairResult(n_t, n_q, teo, float(similarity(teo, n_t, n_q)), int(tc[0]))


class OverlapIndex:
    """All records' intervals, for exact one-vs-all seqpare.

    Chromosome codes of the records and of every query must come from one table
    (the genome's). Build in memory with :meth:`from_arrays`, or persist batches with
    :meth:`write_segment` and load them with :meth:`open`.
    """

    def __init__(self, segments: list[_Segment], threads: int | None = None):
        self.segments = segments
        self.threads = max(1, threads or min(4, os.cpu_count() or 1))
        self._pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None
        # record id -> (segment, local index), over live records only
        ids, seg_of, local = [], [], []
        for s, seg in enumerate(segments):
            live = np.flatnonzero(seg.alive)
            ids.append(seg.record_id[live])
            seg_of.append(np.full(len(live), s, np.int64))
            local.append(live)
        ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        order = np.argsort(ids)
        self._ids = ids[order]
        self._seg_of = np.concatenate(seg_of)[order] if segments else np.zeros(0, np.int64)
        self._local = np.concatenate(local)[order] if segments else np.zeros(0, np.int64)

    # -- construction -------------------------------------------------------

    @classmethod
    def from_arrays(cls, record_id, chrom, start, end, threads: int | None = None) -> "OverlapIndex":
        """In-memory index; rows of each record in file order (ties depend on it)."""
        return cls([_Segment(_build_segment_arrays(record_id, chrom, start, end))], threads)

    @classmethod
    def from_sets(cls, sets: dict[int, IntervalSet], threads: int | None = None) -> "OverlapIndex":
        """In-memory index of ``{record_id: IntervalSet}`` sharing one chromosome code table."""
        ids = list(sets)
        return cls.from_arrays(
            np.repeat(np.asarray(ids, dtype=np.int64), [len(sets[i]) for i in ids]),
            np.concatenate([sets[i].chrom for i in ids]) if ids else [],
            np.concatenate([sets[i].start for i in ids]) if ids else [],
            np.concatenate([sets[i].end for i in ids]) if ids else [],
            threads,
        )

    @staticmethod
    def write_segment(folder, record_id, chrom, start, end) -> Path:
        """Write one immutable segment (atomically) and return its path.

        ``record_id``, ``chrom``, ``start``, ``end``: one row per interval, each
        record's rows in file order. The segment is ignored until the catalog lists
        its records as live.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = _build_segment_arrays(record_id, chrom, start, end)
        # names sort by creation time, so "newest" is well defined; the uuid keeps
        # concurrent writers apart
        name = f"{SEGMENT_PREFIX}{time.time_ns():020d}-{uuid.uuid4().hex}"
        tmp = folder / f"{_TMP_PREFIX}{name}"
        tmp.mkdir()
        for key, arr in arrays.items():
            with open(tmp / f"{key}.npy", "wb") as f:
                np.save(f, arr)
                f.flush()
                os.fsync(f.fileno())
        with open(tmp / "format.json", "w") as f:
            json.dump({"version": _FORMAT_VERSION, "records": len(arrays["record_id"]),
                       "intervals": len(arrays["chrom"])}, f)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, folder / name)
        _fsync_dir(folder)
        return folder / name

    @classmethod
    def open(cls, folder, live_records=None, threads: int | None = None) -> "OverlapIndex":
        """Load every segment of ``folder`` (memory-mapped).

        ``live_records``: the record ids that exist (from the catalog); others are
        ignored. ``None`` keeps every record. A record stored in several segments is
        read from the newest.
        """
        segments = [_Segment.load(p) for p in _segment_paths(Path(folder))]
        live = None if live_records is None else _id_array(live_records)
        claimed = np.zeros(0, np.int64)
        for seg in reversed(segments):  # newest first
            alive = ~np.isin(seg.record_id, claimed)
            if live is not None:
                alive &= np.isin(seg.record_id, live)
            seg.alive = alive
            claimed = np.union1d(claimed, seg.record_id[alive])
        return cls(segments, threads)

    @classmethod
    def compact(cls, folder, live_records) -> Path | None:
        """Rewrite all live records into one new segment, then delete the old segments.

        Returns the new segment's path (None when nothing is live). A crash leaves
        either the old segments, or the new one next to them: both read the same.
        """
        folder = Path(folder)
        old = _segment_paths(folder)
        index = cls.open(folder, live_records, threads=1)
        parts = []
        for seg in index.segments:
            live = np.flatnonzero(seg.alive)
            if not len(live):
                continue
            rows = np.concatenate([np.arange(seg.rec_offsets[i], seg.rec_offsets[i + 1]) for i in live])
            parts.append((np.repeat(seg.record_id[live], seg.n_t[live]),
                          seg.chrom[rows], seg.start[rows], seg.end[rows]))
        new = None
        if parts:
            new = cls.write_segment(folder, *(np.concatenate(c) for c in zip(*parts)))
        del index
        for p in old:
            shutil.rmtree(p, ignore_errors=True)
        for p in folder.glob(f"{_TMP_PREFIX}{SEGMENT_PREFIX}*"):  # leftovers of crashed writers
            shutil.rmtree(p, ignore_errors=True)
        _fsync_dir(folder)
        return new

    # -- queries ------------------------------------------------------------

    @property
    def record_ids(self) -> np.ndarray:
        """Live record ids, ascending."""
        return self._ids

    @property
    def n_intervals(self) -> int:
        return int(sum(int(seg.n_t[seg.alive].sum()) for seg in self.segments))

    def nbytes(self) -> int:
        """Bytes of the overlap structure (all segments' arrays, mapped or not)."""
        return sum(seg.nbytes() for seg in self.segments)

    def n_t(self, record_ids) -> np.ndarray:
        """Interval counts of the given live record ids."""
        seg_of, local = self._lookup(np.asarray(record_ids, dtype=np.int64))
        return np.array([self.segments[s].n_t[i] for s, i in zip(seg_of, local)], dtype=np.int64)

    def _lookup(self, record_ids: np.ndarray):
        pos = np.searchsorted(self._ids, record_ids)
        pos = np.minimum(pos, max(0, len(self._ids) - 1))
        found = (self._ids[pos] == record_ids) if len(self._ids) else np.zeros(len(record_ids), bool)
        if not np.all(found):
            raise KeyError(f"unknown record ids: {record_ids[~found][:5].tolist()}")
        return self._seg_of[pos], self._local[pos]

    def search(self, query: IntervalSet, records: np.ndarray | None = None, method: str = "auto") -> SearchResult:
        """seqpare of every (live) record against ``query`` (target = record).

        ``records``: restrict to these record ids (ids not in the index are ignored);
        the work then scales with those records, not the index. ``method``: "auto",
        "class" (class-layout join) or "sweep" (per-record sweep join); all give the
        same numbers.
        """
        q = _Query.from_set(query)
        wanted = None
        if records is not None:
            r = _id_array(records)
            pos = np.searchsorted(self._ids, r)
            known = pos < len(self._ids)
            known[known] = self._ids[pos[known]] == r[known]
            wanted = self._seg_of[pos[known]], self._local[pos[known]]
        out = []
        for s, seg in enumerate(self.segments):
            if q.n == 0 or not len(seg.record_id):
                continue
            if wanted is None:
                recs = np.flatnonzero(seg.alive)
            else:
                recs = np.sort(wanted[1][wanted[0] == s])
            if not len(recs):
                continue
            res = self._search_segment(seg, q, recs, wanted is not None, method)
            if res is not None:
                out.append(res)
        if out:
            rid, n_t, teo, tc = (np.concatenate(c) for c in zip(*out))
        else:
            rid = n_t = tc = np.zeros(0, np.int64)
            teo = np.zeros(0, np.float32)
        order = np.argsort(rid)
        teo = teo[order].astype(np.float64)
        return SearchResult(q.n, rid[order], n_t[order], teo, similarity(teo, n_t[order], q.n), tc[order])

    def _search_segment(self, seg: _Segment, q: _Query, recs: np.ndarray, restricted: bool, method: str):
        if method == "auto":
            # sweep: every interval of the chosen records + the query once per record;
            # class join: a few steps per (query interval, length class) + pairs
            sweep_cost = float(seg.n_t[recs].sum()) + len(recs) * q.n
            class_cost = q.n * seg.blocks_per_chrom * 4.0 + (0 if restricted else 0.1 * len(seg.chrom))
            method = "sweep" if sweep_cost < class_cost else "class"
        if method == "sweep":
            teo, tc = self._sweep(seg, q, recs)
        elif method == "class":
            teo, tc, recs = self._class(seg, q, recs, restricted)
        else:
            raise ValueError(f"unknown method {method!r}")
        hit = tc > 0
        recs, teo, tc = recs[hit], teo[hit], tc[hit]
        return seg.record_id[recs], seg.n_t[recs].astype(np.int64), teo, tc

    def _map(self, fn, jobs):
        if self._pool is None or len(jobs) <= 1:
            return [fn(*j) for j in jobs]
        return list(self._pool.map(lambda j: fn(*j), jobs))

    def _sweep(self, seg: _Segment, q: _Query, recs: np.ndarray):
        max_nt = int(seg.n_t[recs].max())
        groups = _split_even(seg.n_t[recs] + q.n / 4, self.threads)
        parts = self._map(
            lambda g: _sweep_records(recs[g], seg.rec_offsets, seg.chrom, seg.start, seg.end,
                                     q.start, q.end, q.run_lo, q.run_hi, q.n, max_nt),
            [(g,) for g in groups])
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _class(self, seg: _Segment, q: _Query, recs: np.ndarray, restricted: bool):
        rec_ok = seg.alive
        if restricted:
            rec_ok = np.zeros(len(seg.record_id), np.bool_)
            rec_ok[recs] = True
        bounds = np.linspace(0, q.n, min(self.threads, max(1, q.n // 2048)) + 1).astype(np.int64)
        parts = self._map(
            lambda i0, i1: _class_join(q.chrom, q.start, q.end, i0, i1, seg.chrom_blk_lo, seg.chrom_blk_hi,
                                       seg.blk_offsets, seg.blk_maxlen, seg.cls_start, seg.cls_end,
                                       seg.cls_rec, seg.cls_tloc, rec_ok),
            list(zip(bounds[:-1], bounds[1:])))
        tc = parts[0][4]
        n_acc = parts[0][5]
        for p in parts[1:]:
            tc = tc + p[4]
            n_acc = n_acc + p[5]
        if len(parts) == 1:
            pr = parts[0][:4]
        else:
            pr = [np.concatenate([p[i] for p in parts]) for i in range(4)]
        off, pq, pt, pj = _group_by_record(*pr, n_acc)
        recs = np.flatnonzero(tc)
        with_pairs = recs[n_acc[recs] > 0]
        teo = np.zeros(len(seg.record_id), np.float32)
        if len(with_pairs):
            max_nt = int(seg.n_t[with_pairs].max())
            groups = _split_even(n_acc[with_pairs].astype(np.float64), self.threads)
            res = self._map(lambda g: _match_grouped(with_pairs[g], off, pq, pt, pj, q.n, max_nt),
                            [(g,) for g in groups])
            for g, t in zip(groups, res):
                teo[with_pairs[g]] = t
        return teo[recs], tc[recs], recs


def _id_array(ids) -> np.ndarray:
    """Sorted unique int64 record ids from any iterable (set, list, array)."""
    if not isinstance(ids, np.ndarray):
        ids = np.fromiter(ids, dtype=np.int64)
    return np.unique(ids.astype(np.int64, copy=False))


def _segment_paths(folder: Path) -> list[Path]:
    if not folder.exists():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith(SEGMENT_PREFIX))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
