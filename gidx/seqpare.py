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

How it runs. Queries are sorted into processing order once. Two joins find the
acceptable (query, target) pairs, both emitting them per query in processing order,
and one matching kernel (``match_runs`` in gidx/_seqpare.c) matches them, for all
records at once:

* the *class join* (:meth:`OverlapIndex.search` over many records): each segment
  also stores its intervals in a *class layout*: grouped by chromosome and length
  class (a class spans lengths within a factor of 8; zero length is its own class)
  and sorted by start. The targets of a class with longest interval ``maxlen``
  that overlap ``q`` start in ``(q.start - maxlen, q.end)``: a window found by a
  galloping pointer that only moves forward as the sorted queries advance. A few
  huge intervals sit in their own class and never widen the windows of the others.
  Queries go in tiles of 64 so that each tile visits only the classes with targets
  near it; cost ~ query intervals x classes + overlapping pairs, whatever the
  number of records.
* the *sweep join* (:func:`pair`, and searches restricted to a few candidate
  records with ``records=``): each record's intervals are also stored in *target
  order*; a sweep over one record and the query, skipping query stretches far from
  its intervals, costs the record's intervals + pairs (+ nearby queries), so a
  restricted search scales with the candidates, not with the index.

The kernels (both joins, the matching, the teo sums) are C, in gidx/_seqpare.c, a
CPython extension compiled when gidx is installed: a query process (``gidx query``)
imports them in well under a millisecond, with no JIT compiler to import and nothing
to compile or load from a cache on the query path. They release the GIL, so both joins
run in worker threads (the class join splits the query by chromosome, the sweep by
record) and a server runs searches concurrently; targets are addressed by their
position in the segment's record layout, so one scratch array per search holds what
every target of every record currently holds.

Persistence: an index folder holds immutable segments ``seg-<time>-<uuid>/`` (one
per ingest batch: the record layout and class layout as ``.npy`` files,
memory-mapped on open, and a ``format.json``), written under a temporary name and
renamed atomically. The catalog says which records exist: records it does not list
are ignored (tombstones, orphans of a crashed ingest), and a record found in several
segments is read from the newest one only. ``compact`` rewrites the live records
into one segment, writing it before deleting the old ones.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .intervals import IntervalSet

try:
    from . import _seqpare
except ImportError as e:  # a source tree where the extension was never built
    raise ImportError("gidx._seqpare (the seqpare kernels, gidx/_seqpare.c) is not built: install gidx, "
                      "e.g. `pip install -e .` in the source tree") from e

ACCEPT_J = np.float32(1e-7)  # a pair matches only if its float32 J is strictly above this (as in _seqpare.c)
SEGMENT_PREFIX = "seg-"
_TMP_PREFIX = ".tmp-"
_FORMAT_VERSION = 1
# compaction policy (OverlapIndex.plan_compaction)
MAX_SEGMENT_INTERVALS = 4_000_000  # ~200 MB of arrays: a merge never writes a bigger segment
MERGE_FACTOR = 4
DEAD_FRACTION = 0.25
SWEEP_INLINE = 200_000  # sweep steps below which a segment's sweep is not split over threads
# Array files of a segment: record layout (target order, records contiguous) and
# class layout (chromosome, length class, start).
_SEGMENT_ARRAYS = (
    "record_id", "rec_offsets", "chrom", "start", "end",
    "blk_chrom", "blk_offsets", "blk_maxlen", "cls_start", "cls_end", "cls_rec", "cls_pos",
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
# kernels (C: gidx/_seqpare.c)
#
# The joins, the matching and the teo sums run in the compiled extension
# gidx._seqpare; these wrappers allocate the outputs Python can size. Both workers
# fill, per record of the segment: tc (overlapping pairs) and the tallies of the
# targets they took (count, lowest and highest position), and return the positions
# taken (the order does not matter). held_j/held_p are the search's scratch
# (_Segment.scratch): held_j[t] (0 = free; accepted J are > 0) and held_p[t] (the
# holding pair) say what target t holds; concurrent workers of one search touch
# disjoint targets of it (chromosomes, records).

_INT64_MAX = np.iinfo(np.int64).max


def _tallies(n_rec: int):
    """tc, st_count, st_min, st_max of one worker, as the kernels expect them at the start."""
    return (np.zeros(n_rec, np.int64), np.zeros(n_rec, np.int64), np.full(n_rec, _INT64_MAX, np.int64),
            np.full(n_rec, -1, np.int64))


def _class_worker(runs, q_chrom, q_start, q_end, chrom_blk_lo, chrom_blk_hi, blk_off, blk_maxlen,
                  t_start, t_end, t_rec, t_pos, rec_ok, held_j, held_p):
    """Class join and matching of the query chromosome runs ``runs`` (rows: first rank,
    end rank), in tiles of 64 queries: in each length-class block a tile meets
    the targets starting in (first query start - maxlen, largest end). Returns tc, the
    teo tallies and the touched positions."""
    tc, st_count, st_min, st_max = out = _tallies(len(rec_ok))
    touched = _seqpare.class_worker(runs, q_chrom, q_start, q_end, chrom_blk_lo, chrom_blk_hi, blk_off, blk_maxlen,
                                    t_start, t_end, t_rec, t_pos, rec_ok, held_j, held_p, *out)
    return tc, st_count, st_min, st_max, np.frombuffer(touched, np.int64)


def _sweep_worker(recs, rec_off, t_chrom, t_start, t_end, q_start, q_end, q_run_lo, q_run_hi, q_maxlen, held_j,
                  held_p):
    """Sweep join and matching of the records ``recs``, one at a time: in each of a
    record's chromosome runs a query meets the targets still open at its start plus
    those starting inside it; queries far from any target are skipped by galloping.
    Returns tc, the teo tallies and the touched positions."""
    tc, st_count, st_min, st_max = out = _tallies(len(rec_off) - 1)
    touched = _seqpare.sweep_worker(recs, rec_off, t_chrom, t_start, t_end, q_start, q_end, q_run_lo, q_run_hi,
                                    q_maxlen, held_j, held_p, *out)
    return tc, st_count, st_min, st_max, np.frombuffer(touched, np.int64)


def _sum_teo(held_j, touched, rec_of_pos_off, st_count, st_min, st_max):
    """Per record: teo = sum of held J in target order, in float32 as the reference sums
    it; clears ``held_j``. Free targets hold 0 and adding 0 leaves a float32 sum
    unchanged, so a record whose taken targets are dense is summed by scanning its
    range; sparse ones by sorting their positions."""
    teo = np.zeros(len(st_count), np.float32)
    _seqpare.sum_teo(held_j, touched, rec_of_pos_off, st_count, st_min, st_max, teo)
    return teo


# ---------------------------------------------------------------------------
# layouts


def _target_order(record_index: np.ndarray, chrom: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Permutation to target order: records contiguous (in ``record_index`` order), then
    chromosomes by first line in the record, then start, ties in file order."""
    if len(chrom) == 0:
        return np.zeros(0, np.int64)
    by_rec = np.argsort(record_index, kind="stable")
    r, c = record_index[by_rec].astype(np.int64), chrom[by_rec].astype(np.int64)
    # first row of each (record, chromosome) pair; rows of a record are contiguous, so
    # sorting by that row number orders records, then chromosomes by appearance
    _, first, inverse = np.unique(r * (int(c.max()) + 1) + c, return_index=True, return_inverse=True)
    within = _stable_order(first[inverse], start[by_rec])
    return by_rec[within]


def _bits(x: np.ndarray) -> int:
    return int(x.max()).bit_length() if len(x) else 0


def _stable_order(*keys: np.ndarray) -> np.ndarray:
    """``np.lexsort(keys[::-1])`` (the first key most significant; ties in input order)
    for non-negative integer keys, as one stable argsort of the keys packed into one
    int64 when their bits fit (one sort instead of one per key), else lexsort."""
    bits = [_bits(k) for k in keys]
    if sum(bits) > 62 or any(len(k) and int(k.min()) < 0 for k in keys):
        return np.lexsort(keys[::-1])
    packed = np.zeros(len(keys[0]), np.int64)
    for k, b in zip(keys, bits):
        packed = (packed << np.int64(b)) | k.astype(np.int64, copy=False)
    return np.argsort(packed, kind="stable")


def _build_segment_arrays(record_id, chrom, start, end, records=None) -> dict[str, np.ndarray]:
    """Record layout and class layout of a batch of records' intervals (``records``: more
    record ids of the batch, e.g. empty ones)."""
    record_id = np.asarray(record_id, dtype=np.int64)
    chrom = np.asarray(chrom, dtype=np.int32)
    start = np.asarray(start, dtype=np.int64)
    end = np.asarray(end, dtype=np.int64)
    if not (len(record_id) == len(chrom) == len(start) == len(end)):
        raise ValueError("record_id, chrom, start and end must have the same length")
    if np.any(start > end) or np.any(start < 0) or np.any(chrom < 0):
        raise ValueError("intervals need 0 <= start <= end and chromosome codes >= 0")
    ids = np.union1d(record_id, _id_array(records) if records is not None else np.zeros(0, np.int64))
    rec_index = np.searchsorted(ids, record_id)
    order = _target_order(rec_index, chrom, start)
    chrom, start, end, rec_index = chrom[order], start[order], end[order], rec_index[order]
    rec_offsets = np.concatenate(([0], np.cumsum(np.bincount(rec_index, minlength=len(ids))))).astype(np.int64)

    length = end - start
    # length class: 0 for zero length, k for 8^(k-1) <= length < 8^k. Wider classes mean
    # fewer blocks to visit per query but more non-overlapping targets in each window;
    # a factor of 8 was fastest on the UCSC tracks (2 and 4 were 5-25% slower).
    length_class = np.zeros(len(length), np.int64)
    pos = length > 0
    length_class[pos] = np.floor(np.log2(length[pos])).astype(np.int64) // 3 + 1
    cls_order = _stable_order(chrom, length_class, start)
    blk_key = chrom[cls_order].astype(np.int64) * 128 + length_class[cls_order]
    blk_first = np.flatnonzero(np.concatenate(([True], blk_key[1:] != blk_key[:-1]))) if len(blk_key) else blk_key
    return {
        "record_id": ids.astype(np.int64),
        "rec_offsets": rec_offsets,
        "chrom": chrom,
        "start": start,
        "end": end,
        "blk_chrom": chrom[cls_order][blk_first].astype(np.int32),
        "blk_offsets": np.concatenate((blk_first, [len(chrom)])).astype(np.int64),
        "blk_maxlen": (np.maximum.reduceat(length[cls_order], blk_first) if len(blk_first)
                       else np.zeros(0)).astype(np.int64),
        "cls_start": start[cls_order],
        "cls_end": end[cls_order],
        "cls_rec": rec_index[cls_order].astype(np.int32),
        "cls_pos": cls_order.astype(np.int64),  # position in the record layout
    }


class _Segment:
    """One segment's arrays, which of its records are live, and matching scratch."""

    def __init__(self, arrays: dict[str, np.ndarray], name: str = ""):
        self.name = name
        for k in _SEGMENT_ARRAYS:
            # read-only everywhere, as memory-mapped files are (the kernels only read them)
            view = np.asarray(arrays[k]).view()
            view.flags.writeable = False
            setattr(self, k, view)
        self.n_t = np.diff(self.rec_offsets)
        self.alive = np.ones(len(self.record_id), dtype=np.bool_)
        n_codes = int(self.blk_chrom.max()) + 1 if len(self.blk_chrom) else 0
        codes = np.arange(n_codes)
        self.chrom_blk_lo = np.searchsorted(self.blk_chrom, codes, side="left").astype(np.int64)
        self.chrom_blk_hi = np.searchsorted(self.blk_chrom, codes, side="right").astype(np.int64)
        # length-class blocks per chromosome: the class join's work per query tile
        self.blocks_per_chrom = len(self.blk_chrom) / max(1, len(np.unique(self.blk_chrom)))
        # (held_j, held_p) arrays by target position, all-zero held_j between searches;
        # np.zeros maps untouched pages lazily, so they cost memory where used only
        self._scratch: list[tuple[np.ndarray, np.ndarray]] = []
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path) -> "_Segment":
        arrays = {k: np.load(path / f"{k}.npy", mmap_mode="r") for k in _SEGMENT_ARRAYS}
        return cls(arrays, path.name)

    def nbytes(self) -> int:
        return sum(getattr(self, k).nbytes for k in _SEGMENT_ARRAYS)

    @contextmanager
    def scratch(self, release: bool = False):
        """One (held_j, held_p) pair for one search; returned to the pool only after a
        search that finished (and so left held_j all zero).

        The arrays live in anonymous memory maps, whose pages exist only where a search
        touched them. ``release=True`` (searches restricted to a few records) hands the
        touched pages back to the system after the search (madvise DONTNEED: they read
        as zeros again), so such a search costs the pages of its candidates' intervals,
        and a `gidx truth --top` pass that touches every record over time does not keep
        8 bytes per interval of the index resident (~1 GB at 10^8 intervals)."""
        with self._lock:
            held = self._scratch.pop() if self._scratch else None
        if held is None:
            n = max(1, len(self.chrom))
            maps = (mmap.mmap(-1, 4 * n), mmap.mmap(-1, 4 * n))
            held = (np.frombuffer(maps[0], np.float32, len(self.chrom)),
                    np.frombuffer(maps[1], np.int32, len(self.chrom)), maps)
        yield held[:2]
        if release and hasattr(mmap, "MADV_DONTNEED"):
            for m in held[2]:
                m.madvise(mmap.MADV_DONTNEED)
        with self._lock:
            self._scratch.append(held)


@dataclass
class _Query:
    """A query sorted into processing order: chromosome runs, ascending start, ties in file order."""

    n: int
    chrom: np.ndarray
    start: np.ndarray
    end: np.ndarray
    runs: np.ndarray  # (n_runs, 2): first rank and end rank of each chromosome run
    run_lo: np.ndarray  # by chromosome code: first rank of its run (run_lo == run_hi: none)
    run_hi: np.ndarray
    run_maxlen: np.ndarray  # by chromosome code: longest interval

    @classmethod
    def from_set(cls, query: IntervalSet) -> "_Query":
        chrom = np.asarray(query.chrom, dtype=np.int32)
        start = np.asarray(query.start, dtype=np.int64)
        end = np.asarray(query.end, dtype=np.int64)
        n = len(chrom)
        if np.any(start > end):
            raise ValueError("query intervals need start <= end (the BED reader drops other lines)")
        if n and not _is_processing_order(chrom, start):
            order = np.lexsort((start, chrom))  # stable: equal starts keep file order
            chrom, start, end = chrom[order], start[order], end[order]
        first = np.flatnonzero(np.concatenate(([True], chrom[1:] != chrom[:-1]))) if n else np.zeros(0, np.int64)
        last = np.append(first[1:], n).astype(np.int64) if n else first
        n_codes = int(chrom.max()) + 1 if n else 0
        run_lo = np.zeros(n_codes, np.int64)
        run_hi = np.zeros(n_codes, np.int64)
        run_lo[chrom[first]] = first
        run_hi[chrom[first]] = last
        run_maxlen = np.zeros(n_codes, np.int64)
        if n:
            run_maxlen[chrom[first]] = np.maximum.reduceat(end - start, first)
        return cls(n, chrom, start, end, np.stack((first, last), axis=1).astype(np.int64), run_lo, run_hi, run_maxlen)


def _is_processing_order(chrom: np.ndarray, start: np.ndarray) -> bool:
    """Each chromosome in one block with non-decreasing starts (most BED files)."""
    same = chrom[1:] == chrom[:-1]
    if np.any(same & (start[1:] < start[:-1])):
        return False
    return 1 + int(np.count_nonzero(~same)) == len(np.unique(chrom))


def _split_even(weights: np.ndarray, parts: int) -> list[np.ndarray]:
    """Indices 0..len-1 in at most ``parts`` groups of similar total weight.

    Greedy largest-first for the few items heavier than a fair share (a huge record, a
    long chromosome), then the rest in contiguous runs of equal cumulative weight:
    numpy throughout, so splitting 10^4 candidate records costs microseconds."""
    w = np.asarray(weights, dtype=np.float64)
    parts = min(parts, len(w))
    if parts <= 1:
        return [np.arange(len(w))]
    share = w.sum() / parts
    heavy = np.flatnonzero(w > share / 2)
    heavy = heavy[np.argsort(-w[heavy], kind="stable")]
    groups: list[list[np.ndarray]] = [[] for _ in range(parts)]
    load = np.zeros(parts)
    for i in heavy:
        g = int(np.argmin(load))
        groups[g].append(np.array([i], np.int64))
        load[g] += w[i]
    light = np.setdiff1d(np.arange(len(w)), heavy)
    if len(light):
        # fill the groups, least loaded first, up to an even total
        target = (load.sum() + w[light].sum()) / parts
        room = np.maximum(target - load, 0.0)
        order = np.argsort(load, kind="stable")
        bounds = np.searchsorted(np.cumsum(w[light]), np.cumsum(room[order])[:-1], side="right")
        for g, chunk in zip(order, np.split(light, bounds)):
            groups[g].append(chunk)
    out = [np.sort(np.concatenate(g)) for g in groups if g]
    return [g for g in out if len(g)]


# ---------------------------------------------------------------------------
# public API


def pair(target: IntervalSet, query: IntervalSet) -> PairResult:
    """``seqpare target query``: target = database side (a record), query = the other."""
    query = query.with_chroms(target.chroms) if query.chroms != target.chroms else query
    n_t, n_q = len(target), len(query)
    if n_t == 0 or n_q == 0:
        return PairResult(n_t, n_q, 0.0, float(similarity(0.0, n_t, n_q)), 0)
    index = OverlapIndex.from_arrays(np.zeros(n_t, np.int64), target.chrom, target.start, target.end, threads=1)
    res = index.search(query, method="sweep")
    if not len(res):
        return PairResult(n_t, n_q, 0.0, 0.0, 0)
    return PairResult(n_t, n_q, float(res.teo[0]), float(res.s[0]), int(res.tc[0]))


class OverlapIndex:
    """All records' intervals, for exact one-vs-all seqpare.

    Chromosome codes of the records and of every query must come from one table
    (the genome's). Build in memory with :meth:`from_arrays`, or persist batches with
    :meth:`write_segment` and load them with :meth:`open`. Searches may run
    concurrently from several threads.
    """

    def __init__(self, segments: list[_Segment], threads: int | None = None):
        self.segments = segments
        self.threads = max(1, threads or _default_threads())
        # live record id -> (segment, local index)
        ids = [seg.record_id[seg.alive] for seg in segments]
        seg_of = [np.full(int(seg.alive.sum()), s, np.int64) for s, seg in enumerate(segments)]
        local = [np.flatnonzero(seg.alive) for seg in segments]
        ids = np.concatenate(ids) if segments else np.zeros(0, np.int64)
        order = np.argsort(ids)
        self._ids = ids[order]
        self._seg_of = np.concatenate(seg_of)[order] if segments else np.zeros(0, np.int64)
        self._local = np.concatenate(local)[order] if segments else np.zeros(0, np.int64)

    # -- construction -------------------------------------------------------

    @classmethod
    def from_arrays(cls, record_id, chrom, start, end, records=None, threads: int | None = None) -> "OverlapIndex":
        """In-memory index; one row per interval, each record's rows in file order
        (``records``: as in :meth:`write_segment`)."""
        return cls([_Segment(_build_segment_arrays(record_id, chrom, start, end, records))], threads)

    @classmethod
    def from_sets(cls, sets: dict[int, IntervalSet], threads: int | None = None) -> "OverlapIndex":
        """In-memory index of ``{record_id: IntervalSet}`` sharing one chromosome code table."""
        ids = list(sets)
        if not ids:
            return cls([], threads)
        return cls.from_arrays(
            np.repeat(np.asarray(ids, dtype=np.int64), [len(sets[i]) for i in ids]),
            np.concatenate([sets[i].chrom for i in ids]),
            np.concatenate([sets[i].start for i in ids]),
            np.concatenate([sets[i].end for i in ids]),
            records=ids,
            threads=threads,
        )

    @staticmethod
    def write_segment(folder, record_id, chrom, start, end, records=None) -> Path:
        """Write one immutable segment (atomically) and return its path.

        One row per interval, each record's rows in file order; ``records`` may list
        the batch's record ids, so that records without intervals are stored too.
        The segment is ignored until the catalog lists its records as live.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = _build_segment_arrays(record_id, chrom, start, end, records)
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
        segments = _load_segments(Path(folder))
        if not segments:
            return cls([], threads)
        ids = np.concatenate([seg.record_id for seg in segments])
        which = np.repeat(np.arange(len(segments)), [len(seg.record_id) for seg in segments])
        # one sort for all segments: per id, the newest segment's copy (names sort by time)
        order = np.lexsort((-which, ids))
        first = np.ones(len(order), np.bool_)
        first[1:] = ids[order][1:] != ids[order][:-1]
        alive = np.zeros(len(ids), np.bool_)
        alive[order[first]] = True
        if live_records is not None:
            alive &= np.isin(ids, _id_array(live_records))
        bounds = np.cumsum([len(seg.record_id) for seg in segments])[:-1]
        for seg, a in zip(segments, np.split(alive, bounds)):
            seg.alive = a
        return cls(segments, threads)

    @classmethod
    def compact(cls, folder, live_records, segments=None, max_intervals: int | None = None,
                index: "OverlapIndex | None" = None) -> list[Path]:
        """Rewrite the live records of ``segments`` (paths; default: every segment) into
        new segments of at most ``max_intervals`` intervals each (default
        ``MAX_SEGMENT_INTERVALS``; a record is never split), then delete them.

        ``index``: the folder opened with ``live_records`` (saves opening it again when
        several groups are compacted in a row: the others' segments are untouched).
        Returns the new segments' paths. Memory stays within about one output segment:
        records are copied out of the memory-mapped inputs a segment's worth at a time.
        A crash leaves the old segments, possibly with new ones beside them: both read
        the same (a record in several segments is read from the newest).
        """
        folder = Path(folder)
        if not folder.exists():
            return []
        cap = max_intervals or MAX_SEGMENT_INTERVALS
        old = _segment_paths(folder) if segments is None else sorted(Path(p) for p in segments)
        # which segment holds each live record's newest copy, among all segments
        everything = index if index is not None else cls.open(folder, live_records, threads=1)
        chosen = {p.name for p in old}
        new: list[Path] = []
        parts: list[tuple] = []
        size = 0

        def write() -> None:
            nonlocal size
            if parts:
                new.append(cls.write_segment(folder, *(np.concatenate(c) for c in zip(*parts))))
            parts.clear()
            size = 0

        for seg in everything.segments:
            if seg.name not in chosen:
                continue
            for rec in np.flatnonzero(seg.alive):
                n = int(seg.n_t[rec])
                if size and size + n > cap:
                    write()
                lo, hi = int(seg.rec_offsets[rec]), int(seg.rec_offsets[rec + 1])
                # the record layout is in target order, which rebuilding keeps
                parts.append((np.full(n, seg.record_id[rec], np.int64), np.array(seg.chrom[lo:hi]),
                              np.array(seg.start[lo:hi]), np.array(seg.end[lo:hi]),
                              seg.record_id[rec : rec + 1].astype(np.int64)))
                size += n
        write()
        del everything
        for p in old:
            shutil.rmtree(p, ignore_errors=True)
        for p in folder.glob(f"{_TMP_PREFIX}{SEGMENT_PREFIX}*"):  # leftovers of crashed writers
            shutil.rmtree(p, ignore_errors=True)
        _fsync_dir(folder)
        return new

    @classmethod
    def plan_compaction(cls, folder, live_records, factor: int = MERGE_FACTOR, max_intervals: int | None = None,
                        dead_fraction: float = DEAD_FRACTION, index: "OverlapIndex | None" = None) -> list[list[Path]]:
        """Groups of segments to merge (size-tiered, like an LSM tree): segments with a
        similar number of live intervals (within a factor of ``factor``) are merged once
        ``factor`` of them exist, so a record is rewritten about log_factor(N) times over
        the life of an index, never all records at once (a merge that completes the
        next tier's group is planned the next time); segments of
        ``max_intervals / 2`` or more are full. A segment more than ``dead_fraction`` of
        whose rows belong to records that no longer exist is rewritten alone."""
        cap = max_intervals or MAX_SEGMENT_INTERVALS
        index = index if index is not None else cls.open(folder, live_records, threads=1)
        groups: list[list[Path]] = []
        tiers: dict[int, list[tuple[Path, int]]] = {}
        for seg in index.segments:
            path = Path(folder) / seg.name
            total = len(seg.chrom)
            alive = int(seg.n_t[seg.alive].sum())
            dead = total - alive if total else int((~seg.alive).sum())
            if alive == 0 or (dead > 0 and dead > dead_fraction * max(total, 1)):
                groups.append([path])  # mostly dead rows: rewrite (or drop) it alone
                continue
            if alive >= cap // 2:
                continue  # full
            tier = int(np.log(max(alive, 1)) / np.log(factor))
            tiers.setdefault(tier, []).append((path, alive))
        for tier in sorted(tiers):
            members = tiers[tier]  # oldest first
            while len(members) >= factor:
                take, members = members[:factor], members[factor:]
                groups.append([p for p, _ in take])
        return groups

    # -- queries ------------------------------------------------------------

    @property
    def record_ids(self) -> np.ndarray:
        """Live record ids, ascending."""
        return self._ids

    @property
    def n_intervals(self) -> int:
        """Intervals of live records."""
        return int(sum(int(seg.n_t[seg.alive].sum()) for seg in self.segments))

    def nbytes(self) -> int:
        """Bytes of the overlap structure (all segments' arrays, mapped or not)."""
        return sum(seg.nbytes() for seg in self.segments)

    def n_t(self, record_ids) -> np.ndarray:
        """Interval counts of live records (KeyError for ids that are not live)."""
        record_ids = np.asarray(record_ids, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._ids, record_ids), max(0, len(self._ids) - 1))
        if not len(self._ids) or np.any(self._ids[pos] != record_ids):
            missing = record_ids if not len(self._ids) else record_ids[self._ids[pos] != record_ids]
            raise KeyError(f"records not in the index: {missing[:5].tolist()}")
        return np.array([self.segments[s].n_t[i] for s, i in zip(self._seg_of[pos], self._local[pos])],
                        dtype=np.int64)

    def search(self, query: IntervalSet, records=None, method: str = "auto") -> SearchResult:
        """seqpare of every live record against ``query`` (target = record).

        ``records``: restrict to these record ids (ids not in the index are ignored);
        the work then scales with those records, not with the index. ``method``:
        "auto", "class" (class-layout join) or "sweep" (per-record sweep join); both
        give the same numbers.
        """
        if method not in ("auto", "class", "sweep"):
            raise ValueError(f"unknown method {method!r}")
        q = _Query.from_set(query)
        wanted = None
        if records is not None:
            r = _id_array(records)
            pos = np.minimum(np.searchsorted(self._ids, r), max(0, len(self._ids) - 1))
            known = pos[self._ids[pos] == r] if len(self._ids) else pos[:0]
            wanted = self._seg_of[known], self._local[known]
        out = []
        for s, seg in enumerate(self.segments):
            recs = np.flatnonzero(seg.alive) if wanted is None else np.sort(wanted[1][wanted[0] == s])
            if q.n and len(recs):
                out.append(self._search_segment(seg, q, recs, wanted is not None, method))
        if out:
            rid, n_t, teo, tc = (np.concatenate(c) for c in zip(*out))
        else:
            rid, n_t, teo, tc = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64)
        order = np.argsort(rid)
        teo = teo[order].astype(np.float64)
        return SearchResult(q.n, rid[order], n_t[order], teo, similarity(teo, n_t[order], q.n), tc[order])

    def _search_segment(self, seg: _Segment, q: _Query, recs: np.ndarray, restricted: bool, method: str):
        if method == "auto":
            if restricted:
                # the class join still meets every record's overlaps (and drops the
                # others'); the sweep meets the chosen records' intervals only
                method = "sweep" if 4 * len(recs) <= int(seg.alive.sum()) else "class"
            else:
                # sweep: every record's intervals + the query up to once per record;
                # class join: a few steps per (query interval, length class)
                sweep_cost = float(seg.n_t[recs].sum()) + len(recs) * q.n
                method = "sweep" if sweep_cost < 2.0 * q.n * seg.blocks_per_chrom else "class"
        with seg.scratch(release=restricted) as (held_j, held_p):
            if method == "sweep":
                work = seg.n_t[recs] + q.n
                # a small sweep runs in this thread: handing it to the pool costs more
                groups = _split_even(work, self.threads if int(work.sum()) > SWEEP_INLINE else 1)
                parts = self._map(
                    lambda g: _sweep_worker(recs[g], seg.rec_offsets, seg.chrom, seg.start, seg.end,
                                            q.start, q.end, q.run_lo, q.run_hi, q.run_maxlen, held_j, held_p),
                    groups)
            else:
                rec_ok = seg.alive
                if restricted:
                    rec_ok = np.zeros(len(seg.record_id), np.bool_)
                    rec_ok[recs] = True
                groups = _split_even(q.runs[:, 1] - q.runs[:, 0], self.threads)
                parts = self._map(
                    lambda g: _class_worker(q.runs[g], q.chrom, q.start, q.end, seg.chrom_blk_lo, seg.chrom_blk_hi,
                                            seg.blk_offsets, seg.blk_maxlen, seg.cls_start, seg.cls_end,
                                            seg.cls_rec, seg.cls_pos, rec_ok, held_j, held_p), groups)
            tc, st_count, st_min, st_max, touched = parts[0]
            for p in parts[1:]:
                tc = tc + p[0]
                st_count = st_count + p[1]
                st_min = np.minimum(st_min, p[2])
                st_max = np.maximum(st_max, p[3])
            if len(parts) > 1:
                touched = np.concatenate([p[4] for p in parts])
            teo = _sum_teo(held_j, touched, seg.rec_offsets, st_count, st_min, st_max)
        hit = np.flatnonzero(tc)
        return seg.record_id[hit], seg.n_t[hit].astype(np.int64), teo[hit], tc[hit]

    def _map(self, fn, groups):
        if len(groups) <= 1:
            return [fn(g) for g in groups]
        return list(_pool().map(fn, groups))


def _default_threads() -> int:
    return min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """One worker pool for every index (the kernels release the GIL); indexes are
    opened per query, so a pool per index would start threads per query."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max(2, _default_threads()), thread_name_prefix="gidx-seqpare")
        return _POOL


def _id_array(ids) -> np.ndarray:
    """Sorted unique int64 record ids from any iterable (set, list, array)."""
    if not isinstance(ids, np.ndarray):
        ids = np.fromiter(ids, dtype=np.int64)
    return np.unique(ids.astype(np.int64, copy=False))


def _load_segments(folder: Path, attempts: int = 5) -> list[_Segment]:
    """All segments of ``folder``. A compaction running meanwhile may delete segments
    after they were listed; it writes their replacement first, so listing again finds
    it."""
    for attempt in range(attempts):
        try:
            return [_Segment.load(p) for p in _segment_paths(folder)]
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise
    return []


def _segment_paths(folder: Path) -> list[Path]:
    if not folder.exists():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith(SEGMENT_PREFIX))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems do not sync directories
        pass
    finally:
        os.close(fd)
