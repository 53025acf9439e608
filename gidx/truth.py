"""Exact seqpare ground truth of an index, stored in the catalog table ``seqpare``.

Row ``(query_id=Q, target_id=R, n_q, n_t, teo, s)`` is the reference's
``seqpare R Q``: record Q used as a query against record R. By default every
pair with S > 0 is kept (self pairs included, S = 1); with ``top_k`` only each
query record's K best targets (by S, then by smaller target id).

Incremental and resumable by construction: ``seqpare_progress`` stores, per
query record, ``covered_upto`` = the largest record id it has been compared
with. Record ids only grow, so after an ingest the work left for record Q is
exactly the targets with id > covered_upto (a search restricted to them); a
new record starts at 0 (all targets). Results and progress of a batch of
query records are committed in one transaction, so a kill loses at most the
batch in flight and a rerun continues from there.

**Top K from candidates** (``top_k > 0``, ``candidates = C > 0``, the default
for ``--top``): a one-vs-all search meets every overlapping interval pair of
the index, which at 10^5 records of real-derived files is ~10^6-10^7 pairs per
query. Instead, per query record Q:

1. candidates: Q itself and the C records (among the targets it still lacks)
   whose set vectors are nearest to Q's by cosine (``VectorStore.search_many``);
   exact seqpare of Q against those only (a per-candidate sweep: the cost follows
   the candidates, not the index). While at least ``EXTEND_MIN`` of the last C/2
   searched enter the top K with an S above a tenth of Q's best neighbour's (a
   dense neighbourhood: the cosine order has not run out), the next C by cosine
   are searched too, up to ``EXTEND`` * C. This is a heuristic for where to look,
   not a guarantee;
2. s_K: the K-th best S among the candidates and Q's stored rows (0 while
   fewer than K have S > 0);
3. a bound for every other target R: a matching pairs intervals one to one on
   one chromosome and each matched J is at most 1 (also in float32), so
   ``teo <= m = sum over chromosomes of min(N_Q,c, N_R,c)`` and
   ``S <= m / (N_Q + N_R - m)`` (``<= min(N_Q, N_R) / max(N_Q, N_R)``, the size
   ratio); m = 0 means no shared chromosome, S = 0. Interval counts per record
   and chromosome come from the catalog. R is *excluded* when m = 0 or its
   bound is < s_K (strictly: a target whose S could tie s_K may win the tie on
   its id);
4. if at most ``cap`` (= C) targets are not excluded, they are searched exactly
   too: Q's stored top K is then **certified** equal to the top K of an
   all-pairs search (same rows, same tie order); otherwise Q is stored
   uncertified: its rows are the top K of the records searched, with exact S,
   and a true top-K pair can be missing only if its target was neither a
   vector candidate nor excluded by the bound (``certified`` in
   ``seqpare_progress``; benchmarks/bench_truth_top.py measures how often).

Incremental: an old record searches only the new ids (candidates among ids >
covered_upto, bound over them) and merges with its stored top K; it stays
certified only if it was and the new ids are settled by the bound. A changed
``--top`` or ``--candidates`` starts over. ``candidates = 0``: the one-vs-all
search of every record (always certified; what ``top_k = 0`` does).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from .index import Index
    from .intervals import IntervalSet

BATCH_SECONDS = 2.0  # commit at least this often
CHUNK = 1024  # query records per catalog read and per vector search (bounded memory; a
# brute-force search_many reads every stored vector once per call)
STAGE2 = 16  # the chromosome bound is computed for at most STAGE2 * cap targets per query
EXTEND = 4  # vector candidates fetched per query record: EXTEND * C, searched C at a time
EXTEND_FLOOR = 0.1  # ... counting only entrants with S >= EXTEND_FLOOR * the best neighbour's S
EXTEND_MIN = 2  # ... the next C when at least this many of the last C/2 searched entered the top K


def default_candidates(top_k: int) -> int:
    """Vector candidates per query record for ``--top K``: max(K, 50). Measured on 10^4
    real-derived hg19 records (benchmarks/bench_truth_top.py, K = 50): C = 50 misses
    ~4% of the true top-50 pairs with S >= 0.05 at ~100 exact searches per record;
    C = 100 ~3% at ~175 (the time budget of 10^5 records in 30 min decides)."""
    return max(top_k, 50) if top_k > 0 else 0


@dataclass
class TruthReport:
    queries: int = 0  # query records computed in this run
    pairs: int = 0  # rows written
    seconds: float = 0.0
    up_to_date: int = 0  # query records that needed nothing
    candidates: int = 0  # vector candidates per query record (0: every record was searched)
    certified: int = 0  # query records of this run whose top K is certified exact
    uncertified: int = 0  # ... whose top K is exact over the records searched only
    searched: int = 0  # exact (query, target) searches, bound-forced ones included (top K from candidates)


@dataclass
class QueryTask:
    """One query record's work: what a worker needs besides the overlap structure."""

    record_id: int
    intervals: "IntervalSet"
    covered_upto: int  # targets with ids <= this are done (0: none)
    candidates: np.ndarray | None = None  # target ids to search (None: every target above covered_upto)
    old_ids: np.ndarray | None = None  # its stored rows' targets and S (top K: merged into s_K)
    old_s: np.ndarray | None = None
    old_certified: bool = True


def record_sets(index: "Index", record_ids: list[int]):
    """IntervalSets of stored records, from the catalog, in file order (every id asked
    for that has no interval rows, such as an empty file's record, gets an empty set)."""
    from .intervals import IntervalSet

    if not record_ids:
        return {}
    import pyarrow as pa
    import pyarrow.compute as pc

    g = index.genome
    with index.catalog.connect() as conn:
        raw = index.catalog.raw(conn)
        tbl = raw.sql(
            "select record_id, chrom, chrom_start, chrom_end from intervals "
            f"where record_id in ({','.join(str(int(r)) for r in record_ids)}) order by record_id, i"
        ).to_arrow_table()
    rid = tbl.column("record_id").to_numpy()
    chrom = pc.index_in(tbl.column("chrom"), value_set=pa.array(g.names)).to_numpy().astype(np.int32)
    start, end = tbl.column("chrom_start").to_numpy(), tbl.column("chrom_end").to_numpy()
    out = {}
    bounds = np.flatnonzero(np.diff(rid)) + 1
    for lo, hi in zip(np.concatenate(([0], bounds)), np.concatenate((bounds, [len(rid)]))) if len(rid) else ():
        out[int(rid[lo])] = IntervalSet(tuple(g.names), chrom[lo:hi], start[lo:hi], end[lo:hi])
    for r in record_ids:
        if int(r) not in out:
            out[int(r)] = IntervalSet(tuple(g.names), np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int64))
    return out


def _cut(res, top_k: int):
    """The ``top_k`` best of a SearchResult (S descending, then record id)."""
    order = np.lexsort((res.record_id, -res.s))[:top_k]
    return type(res)(res.n_q, res.record_id[order], res.n_t[order], res.teo[order], res.s[order], res.tc[order])


def search_one(overlap, query, covered_upto: int, ids_sorted: np.ndarray, top_k: int):
    """seqpare of one query record against the targets it still lacks (ids above
    ``covered_upto``; 0: every record), cut to the ``top_k`` best (0: all)."""
    targets = None if covered_upto == 0 else ids_sorted[ids_sorted > covered_upto]
    res = overlap.search(query, records=targets)
    return _cut(res, top_k) if top_k else res


# ---- bounds ------------------------------------------------------------------------


class RecordBounds:
    """Interval counts of every live record, in total and per chromosome (from the
    catalog), for upper bounds on seqpare S that cost no interval comparison.

    Memory: 8 bytes per (record, chromosome it uses) plus ~40 per record: 5 MB for the
    10^4 real-derived hg19 records of benchmarks/scale_corpus.py (58 chromosomes each,
    contigs included), ~50 MB at 10^5."""

    def __init__(self, ids: np.ndarray, n: np.ndarray, off: np.ndarray, chrom: np.ndarray, count: np.ndarray):
        self.ids = np.asarray(ids, np.int64)  # sorted live ids
        self.n = np.asarray(n, np.int64)  # intervals per record
        self.off = np.asarray(off, np.int64)  # record i's chromosome entries: off[i]:off[i+1]
        self.chrom = np.asarray(chrom, np.int32)
        self.count = np.asarray(count, np.int32)
        self.by_size = np.argsort(self.n, kind="stable")
        self.n_sorted = self.n[self.by_size]
        self.n_codes = int(self.chrom.max(initial=0)) + 1

    @classmethod
    def from_catalog(cls, index: "Index", ids_sorted: np.ndarray) -> "RecordBounds":
        import pyarrow as pa
        import pyarrow.compute as pc

        g = index.genome
        with index.catalog.connect() as conn:
            tbl = index.catalog.raw(conn).sql(
                "select record_id, chrom, count(*) as n from intervals group by all order by record_id, chrom"
            ).to_arrow_table()
        rid = tbl.column("record_id").to_numpy().astype(np.int64)
        chrom = pc.index_in(tbl.column("chrom"), value_set=pa.array(g.names)).to_numpy(zero_copy_only=False)
        count = tbl.column("n").to_numpy().astype(np.int32)
        keep = np.isin(rid, ids_sorted)  # records removed meanwhile, orphans: not targets
        rid, chrom, count = rid[keep], chrom[keep].astype(np.int32), count[keep]
        pos = np.searchsorted(ids_sorted, rid)
        n = np.bincount(pos, weights=count.astype(np.float64), minlength=len(ids_sorted)).astype(np.int64)
        off = np.concatenate(([0], np.cumsum(np.bincount(pos, minlength=len(ids_sorted))))).astype(np.int64)
        return cls(ids_sorted, n, off, chrom, count)

    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.ids, self.n, self.off, self.chrom, self.count, self.by_size,
                                      self.n_sorted))

    def open_targets(self, query: "IntervalSet", above: int, searched: np.ndarray, s_k: float,
                     cap: int) -> np.ndarray | None:
        """Targets with id > ``above``, not in ``searched`` (sorted ids), whose S against
        ``query`` may reach ``s_k`` (bound >= s_k; any S > 0 when s_k is 0); None when
        more than ``cap`` (or too many to bound per chromosome)."""
        nq = len(query)
        if nq == 0:  # S = 0 (or NaN) against everything: nothing to store
            return np.zeros(0, np.int64)
        # size ratio, over the records sorted by size: bound >= s_k only for
        # n in [s_k * nq, nq / s_k] (margins for rounding; the exact test follows)
        if s_k > 0:
            lo = np.searchsorted(self.n_sorted, max(1, int(np.floor(s_k * nq)) - 1), side="left")
            hi = np.searchsorted(self.n_sorted, int(min(np.ceil(nq / s_k), 2**62)) + 1, side="right")
        else:
            lo, hi = np.searchsorted(self.n_sorted, 1, side="left"), len(self.n_sorted)
        first_new = int(np.searchsorted(self.ids, above, side="right"))
        if hi - lo <= len(self.ids) - first_new:  # fewer by size than by id
            if first_new == 0 and hi - lo - len(searched) > STAGE2 * cap:
                return None
            idx = self.by_size[lo:hi]
            idx = idx[self.ids[idx] > above]
        else:
            idx = np.arange(first_new, len(self.ids))
        if len(searched):
            idx = idx[~np.isin(self.ids[idx], searched, assume_unique=True)]
        nt = self.n[idx]
        m = np.minimum(nt, nq)
        idx = idx[(m > 0) & ~(m / np.maximum(nq + nt - m, 1) < s_k)]
        if len(idx) > STAGE2 * cap:
            return None
        if len(idx):
            # per chromosome: m = sum_c min(N_Q,c, N_R,c)
            qc = np.bincount(query.chrom, minlength=self.n_codes).astype(np.int64)
            counts = self.off[idx + 1] - self.off[idx]
            first = np.cumsum(counts) - counts
            rows = np.repeat(self.off[idx] - first, counts) + np.arange(int(counts.sum()))
            c = self.chrom[rows]
            # every record left has intervals, so at least one entry: no empty reduceat segment
            m = np.add.reduceat(np.minimum(self.count[rows].astype(np.int64), qc[c]), first)
            nt = self.n[idx]
            idx = idx[(m > 0) & ~(m / np.maximum(nq + nt - m, 1) < s_k)]
        if len(idx) > cap:
            return None
        return np.sort(self.ids[idx])


# ---- one query record --------------------------------------------------------------


def _kth(s: np.ndarray, k: int) -> float:
    """The k-th largest of ``s`` (S > 0 only); 0 when fewer than k."""
    s = s[s > 0]
    if len(s) < k:
        return 0.0
    return float(np.partition(s, len(s) - k)[len(s) - k])


def _s_of(res, ids: np.ndarray) -> np.ndarray:
    """S of ``ids`` in a SearchResult (0 for ids it does not list)."""
    if not len(res.record_id) or not len(ids):
        return np.zeros(len(ids))
    by = np.argsort(res.record_id, kind="stable")
    r = res.record_id[by]
    at = np.minimum(np.searchsorted(r, ids), len(r) - 1)
    return np.where(r[at] == ids, res.s[by][at], 0.0)


def _merge(a, b):
    """Two SearchResults of one query over disjoint targets, as one."""
    fields = ("record_id", "n_t", "teo", "s", "tc")
    return type(a)(a.n_q, *(np.concatenate((getattr(a, f), getattr(b, f))) for f in fields))


def run_task(overlap, task: QueryTask, ids_sorted: np.ndarray, top_k: int, bounds: RecordBounds | None = None,
             cap: int = 0):
    """One query record: ``(record id, SearchResult to store, certified, targets searched)``.

    ``task.candidates`` None: every target above ``covered_upto`` (all pairs, or the
    exhaustive top K): certified. Otherwise (best first by cosine, up to
    ``EXTEND * cap``): the first ``cap``; the next ``cap`` while at least
    ``EXTEND_MIN`` of the last ``cap / 2`` searched entered the top K; then the bound,
    see the module docstring."""
    q = task.record_id
    if task.candidates is None:
        res = search_one(overlap, task.intervals, task.covered_upto, ids_sorted, top_k)
        return q, res, True, -1
    order = np.asarray(task.candidates, np.int64)
    order = order[(order > task.covered_upto) & (order != q)]
    block = max(1, cap)
    first = order[:block]
    res = overlap.search(task.intervals, records=np.union1d(first, [q]) if q > task.covered_upto else first)
    searched = len(first) + (q > task.covered_upto)
    old_s = np.zeros(0) if task.old_s is None else np.asarray(task.old_s, np.float64)
    old_ids = np.zeros(0, np.int64) if task.old_ids is None else np.asarray(task.old_ids, np.int64)

    def kth() -> float:  # K-th best S over the stored rows and the results (rows searched again count once)
        return _kth(np.concatenate((old_s[~np.isin(old_ids, res.record_id)], res.s)), top_k)

    done = len(first)
    while done < len(order):
        # dense neighbourhoods (many records with about the same S): while the last
        # candidates searched still enter the top K, the cosine order has not run out
        tail = order[max(0, done - block // 2) : done]
        s_tail = _s_of(res, tail)
        s_k = kth()
        # entrants that matter: above a tenth of the best neighbour's S (chance overlaps of
        # a few intervals are scattered over the whole cosine order: more of them do not
        # tell that the order ran out)
        best = float(np.max(res.s[res.record_id != q], initial=0.0))
        if int(np.sum((s_tail > 0) & (s_tail >= max(s_k, EXTEND_FLOOR * best)))) < EXTEND_MIN:
            break
        nxt = order[done : done + block]
        res = _merge(res, overlap.search(task.intervals, records=np.sort(nxt)))
        done += len(nxt)
        searched += len(nxt)
    certified = bool(task.old_certified)
    if certified and bounds is not None:
        searched_ids = np.union1d(np.union1d(order[:done], [q]), old_ids)  # old rows: S known, stored
        # stored S are float32 in the catalog (rounded either way): a hair of margin
        more = bounds.open_targets(task.intervals, task.covered_upto, searched_ids, kth() * (1 - 1e-6), cap)
        if more is None:
            certified = False
        elif len(more):
            res = _merge(res, overlap.search(task.intervals, records=more))
            searched += len(more)
    return q, _cut(res, top_k), certified, searched


# ---- candidates --------------------------------------------------------------------


def _query_vectors(index: "Index", table: str, encoder, ids: list[int], sets: dict) -> np.ndarray:
    """The stored set vectors of records ``ids`` (from the memory-mapped mirror), the
    ones it lacks re-embedded from their intervals (the same vectors)."""
    mirror = index.vectors.mirror
    pos, found = mirror.rows_of(table, np.asarray(ids, np.int64))
    rows = mirror.gather(table, pos[found])
    missing = [i for i, f in zip(ids, found) if not f]
    emb = {}
    dim = rows.shape[1] if len(rows) else None
    if missing:
        vecs = encoder.embed([sets[i] for i in missing], index.genome.lengths)
        emb = dict(zip(missing, np.asarray(vecs, np.float32)))
        dim = dim or np.asarray(vecs).shape[1]
    out = np.zeros((len(ids), dim), np.float32)
    if found.any():
        out[found] = rows
    for j in np.flatnonzero(~found):
        out[j] = emb[ids[j]]
    return out


def make_tasks(index: "Index", chunk: list[int], sets: dict, done: dict, ids_sorted: np.ndarray, top_k: int,
               candidates: int, table: str | None = None, encoder=None) -> list[QueryTask]:
    """The tasks of a chunk of query records: vector candidates among the targets each
    lacks (one ``search_many`` per distinct covered_upto, in chunk order: the same
    candidates whatever runs the searches) and their stored rows."""
    covered = {q: done.get(q, (0, 0, 0, True))[0] for q in chunk}
    if not top_k or not candidates:
        return [QueryTask(q, sets[q], covered[q]) for q in chunk]
    with index.catalog.connect() as conn:
        old = index.catalog.raw(conn).sql(
            f"select query_id, target_id, s from seqpare where query_id in ({','.join(str(q) for q in chunk)}) "
            "order by query_id, target_id").fetchnumpy()
    old_q = np.asarray(old["query_id"], np.int64)
    old_t, old_s = np.asarray(old["target_id"], np.int64), np.asarray(old["s"], np.float64)
    cands: dict[int, np.ndarray] = {}
    groups: dict[int, list[int]] = {}
    for q in chunk:
        groups.setdefault(covered[q], []).append(q)
    for upto, qs in groups.items():
        targets = ids_sorted[ids_sorted > upto]
        if len(targets) <= candidates:  # every target is a candidate
            for q in qs:
                cands[q] = targets
            continue
        qvecs = _query_vectors(index, table, encoder, qs, sets)
        got, sims = index.vectors.search_many(table, qvecs, EXTEND * candidates, targets, exact=True)
        for q, row, sim in zip(qs, np.asarray(got), np.asarray(sims)):
            ok = row >= 0
            row, sim = row[ok].astype(np.int64), sim[ok]
            cands[q] = row[np.lexsort((row, -sim))]  # best first, ties by id
    tasks = []
    for q in chunk:
        m = old_q == q
        tasks.append(QueryTask(q, sets[q], covered[q], cands[q], old_t[m], old_s[m],
                               bool(done.get(q, (0, 0, 0, True))[3])))
    return tasks


# ---- the run -----------------------------------------------------------------------


def shards_of(chunks, size: int):
    """Lists of at most ``size`` tasks; each chunk's tasks are made when its first shard
    is asked for."""
    for tasks in chunks:
        for lo in range(0, len(tasks), size):
            yield tasks[lo : lo + size]


TRUTH_PROCESS_MIN = 4096  # query records from which truth searches in worker processes
TRUTH_SHARD = 16  # query records per worker-process task


_WORKER: tuple | None = None  # worker process: (overlap structure, live ids, bounds)


def _worker_open(seg_dir: str, live: np.ndarray, bounds) -> None:
    global _WORKER
    from .seqpare import OverlapIndex

    # one thread: the processes are the parallelism (results do not depend on it)
    _WORKER = (OverlapIndex.open(seg_dir, live, threads=1), live, bounds)


def _worker_run(args) -> list:
    tasks, top_k, cap = args
    overlap, live, bounds = _WORKER
    return [run_task(overlap, task, live, top_k, bounds, cap) for task in tasks]


def _process_results(index_path: Path, live: np.ndarray, shards, top_k: int, bounds, cap: int, workers: int):
    """Per shard, in order: ``[(query record id, SearchResult, certified, searched)]``
    from ``workers`` spawned processes, each with the overlap structure opened once
    (memory-mapped: the page cache is shared) and the bounds sent once."""
    from .index import process_map

    seg_dir = str(Path(index_path).resolve() / "segments")
    yield from process_map(_worker_run, ((shard, top_k, cap) for shard in shards), workers, ahead=4 * workers,
                           initializer=_worker_open, initargs=(seg_dir, live, bounds))


def compute_truth(
    index: "Index",
    top_k: int = 0,
    progress: Callable[[int, int, str], None] | None = None,
    batch_seconds: float = BATCH_SECONDS,
    ray: str | None = None,
    candidates: int | None = None,
) -> TruthReport:
    """Bring the ``seqpare`` table up to date with the index's records.

    ``candidates``: with ``top_k``, vector candidates per query record (None: the
    default for K, :func:`default_candidates`; 0: search every record). Ignored for
    all pairs.

    ``ray``: compute the searches on Ray workers (``"auto"`` or a cluster address, see
    :mod:`gidx.distributed`), in shards of query records; this process still finds the
    vector candidates and writes every row and progress mark, in the same
    transactions, so the rows are those of a single-process run and a killed run
    resumes the same way."""
    import pyarrow as pa
    from sqlalchemy import text

    from .errors import GidxError
    from .index import _now, worker_processes

    if top_k < 0:
        raise GidxError("--top K needs K >= 0")
    if candidates is not None and candidates < 0:
        raise GidxError("--candidates C needs C >= 0")
    if not top_k:
        candidates = 0
    elif candidates is None:
        candidates = default_candidates(top_k)
    elif 0 < candidates < top_k:
        raise GidxError(f"--candidates {candidates} is below --top {top_k}: give C >= K (or 0: every record)")
    worker_processes(0, TRUTH_PROCESS_MIN, "GIDX_TRUTH_PROCESSES")  # a malformed setting fails before any write
    t0 = time.perf_counter()
    report = TruthReport(candidates=candidates)
    with index.catalog.connect() as conn:
        live = {int(r[0]) for r in conn.execute(text("select id from records"))}
        done = {int(r[0]): (int(r[1]), int(r[2]), int(r[3]), bool(r[4])) for r in conn.execute(
            text("select record_id, covered_upto, top_k, candidates, certified from seqpare_progress"))}
    if not live:
        report.seconds = time.perf_counter() - t0
        return report
    if any((k, c) != (top_k, candidates) for _, k, c, _ in done.values()):
        # a different --top / --candidates means different rows: start over rather than mix them
        with index.catalog.connect(write=True) as conn:
            conn.execute(text("delete from seqpare"))
            conn.execute(text("delete from seqpare_progress"))
        done = {}
    newest = max(live)
    todo = sorted(r for r in live if done.get(r, (0,))[0] < newest)
    report.up_to_date = len(live) - len(todo)
    ids_sorted = np.asarray(sorted(live), dtype=np.int64)
    overlap = index.overlap(live)  # also refuses an overlap structure that lacks records
    use_candidates = bool(top_k and candidates and todo)
    bounds = RecordBounds.from_catalog(index, ids_sorted) if use_candidates else None
    table = encoder = None
    if use_candidates:
        eid, encoder = index.set_encoder()
        table = index.vector_table(eid, encoder)

    pending: list[tuple] = []  # (query record id, SearchResult, certified, searched)

    def commit() -> None:
        if not pending:
            return
        parts = []
        for q, res, _, _ in pending:
            keep = res.s > 0
            parts.append(pa.table({
                "query_id": pa.array(np.full(int(keep.sum()), q, np.int32)),
                "target_id": pa.array(res.record_id[keep].astype(np.int32)),
                "n_q": pa.array(np.full(int(keep.sum()), res.n_q, np.int64)),
                "n_t": pa.array(res.n_t[keep]),
                "teo": pa.array(res.teo[keep]),
                "s": pa.array(res.s[keep]),
            }))
        rows = pa.concat_tables(parts)
        prog = pa.table({
            "record_id": pa.array([p[0] for p in pending], pa.int32()),
            "covered_upto": pa.array([newest] * len(pending), pa.int32()),
            "top_k": pa.array([top_k] * len(pending), pa.int32()),
            "candidates": pa.array([candidates] * len(pending), pa.int32()),
            "certified": pa.array([bool(p[2]) for p in pending], pa.bool_()),
            "computed_at": pa.array([_now()] * len(pending), pa.timestamp("us")),
        })
        qids = ",".join(str(p[0]) for p in pending)
        with index.catalog.connect(write=True) as conn:
            raw = index.catalog.raw(conn)
            raw.register("gidx_new_pairs", rows)
            raw.register("gidx_new_progress", prog)
            # a rerun after a kill may meet rows of its own half-finished batch: replace them
            raw.execute("delete from seqpare where (query_id, target_id) in "
                        "(select query_id, target_id from gidx_new_pairs)")
            raw.execute("insert into seqpare by name select * from gidx_new_pairs")
            if top_k:
                raw.execute(f"""
                    delete from seqpare where query_id in ({qids}) and (query_id, target_id) not in (
                        select query_id, target_id from (
                            select query_id, target_id, row_number() over (
                                partition by query_id order by s desc, target_id) as r
                            from seqpare where query_id in ({qids})) where r <= {top_k})""")
            raw.execute(f"delete from seqpare_progress where record_id in ({qids})")
            raw.execute("insert into seqpare_progress by name select * from gidx_new_progress")
            raw.unregister("gidx_new_pairs")
            raw.unregister("gidx_new_progress")
        report.pairs += rows.num_rows
        report.queries += len(pending)
        for _, _, cert, searched in pending:
            if top_k:
                report.certified += bool(cert)
                report.uncertified += not cert
            report.searched += max(0, searched)
        pending.clear()

    def chunks():
        """Tasks of ``CHUNK`` query records at a time: intervals read from the catalog,
        vector candidates found, when the chunk is reached."""
        for lo in range(0, len(todo), CHUNK):
            chunk = todo[lo : lo + CHUNK]
            sets = record_sets(index, chunk)
            yield make_tasks(index, chunk, sets, done, ids_sorted, top_k, candidates if use_candidates else 0,
                             table, encoder)

    cap = candidates
    last_commit = time.perf_counter()
    finished = 0
    shard_results = None  # shards of (query record id, SearchResult, certified, searched), in order
    if ray is not None and todo:
        from .distributed import truth_results, truth_shard_size

        size = truth_shard_size(ray, len(todo))
        shard_results = truth_results(ray, index.path, ids_sorted, shards_of(chunks(), size), top_k, bounds=bounds,
                                      cap=cap)
    elif todo and (procs := worker_processes(len(todo), TRUTH_PROCESS_MIN, "GIDX_TRUTH_PROCESSES")) > 1:
        # big runs: worker processes, as ingest parses (threads leave most of a second core
        # idle: the per-segment Python around the kernels holds the GIL)
        shard_results = _process_results(index.path, ids_sorted, shards_of(chunks(), TRUTH_SHARD), top_k, bounds,
                                         cap, procs)
    if shard_results is not None:
        for results in shard_results:
            pending += results
            finished += len(results)
            if progress:
                progress(finished, len(todo), f"record {results[-1][0]}")
            if time.perf_counter() - last_commit > batch_seconds:
                commit()
                last_commit = time.perf_counter()
    elif todo:
        # records are searched in parallel threads (the seqpare kernels release the GIL),
        # their results taken in order: the same rows and commits as one at a time
        from concurrent.futures import ThreadPoolExecutor

        from .index import _bounded_map

        workers = max(1, overlap.threads)

        def run(task):
            return run_task(overlap, task, ids_sorted, top_k, bounds, cap)

        with ThreadPoolExecutor(workers, thread_name_prefix="gidx-truth") as pool:
            for tasks in chunks():
                for task, result in zip(tasks, _bounded_map(pool, run, tasks, ahead=4 * workers)):
                    if progress:
                        progress(finished, len(todo), f"record {task.record_id}")
                    pending.append(result)
                    finished += 1
                    if time.perf_counter() - last_commit > batch_seconds:
                        commit()
                        last_commit = time.perf_counter()
    commit()
    if progress:
        progress(len(todo), len(todo), "")
    report.seconds = time.perf_counter() - t0
    return report
