"""Exact seqpare ground truth of an index, stored in the catalog table ``seqpare``.

Row ``(query_id=Q, target_id=R, n_q, n_t, teo, s)`` is the reference's
``seqpare R Q``: record Q used as a query against record R. By default every
pair with S > 0 is kept (self pairs included, S = 1); with ``top_k`` only each
query record's K best targets.

Incremental and resumable by construction: ``seqpare_progress`` stores, per
query record, ``covered_upto`` = the largest record id it has been compared
with. Record ids only grow, so after an ingest the work left for record Q is
exactly the targets with id > covered_upto (a search restricted to them); a
new record starts at 0 (all targets). Results and progress of a batch of
query records are committed in one transaction, so a kill loses at most the
batch in flight and a rerun continues from there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from .index import Index

BATCH_SECONDS = 2.0  # commit at least this often


@dataclass
class TruthReport:
    queries: int = 0  # query records computed in this run
    pairs: int = 0  # rows written
    seconds: float = 0.0
    up_to_date: int = 0  # query records that needed nothing


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


def search_one(overlap, query, covered_upto: int, ids_sorted: np.ndarray, top_k: int):
    """seqpare of one query record against the targets it still lacks (ids above
    ``covered_upto``; 0: every record), cut to the ``top_k`` best (0: all)."""
    targets = None if covered_upto == 0 else ids_sorted[ids_sorted > covered_upto]
    res = overlap.search(query, records=targets)
    if top_k:
        order = np.lexsort((res.record_id, -res.s))[:top_k]
        res = type(res)(res.n_q, res.record_id[order], res.n_t[order], res.teo[order], res.s[order], res.tc[order])
    return res


def compute_truth(
    index: "Index",
    top_k: int = 0,
    progress: Callable[[int, int, str], None] | None = None,
    batch_seconds: float = BATCH_SECONDS,
    ray: str | None = None,
) -> TruthReport:
    """Bring the ``seqpare`` table up to date with the index's records.

    ``ray``: compute the searches on Ray workers (``"auto"`` or a cluster address, see
    :mod:`gidx.distributed`), in shards of query records; this process still writes
    every row and progress mark, in the same transactions, so the rows are those of a
    single-process run and a killed run resumes the same way."""
    import pyarrow as pa
    from sqlalchemy import text

    from .index import _now

    t0 = time.perf_counter()
    report = TruthReport()
    with index.catalog.connect() as conn:
        live = {int(r[0]) for r in conn.execute(text("select id from records"))}
        done = {int(r[0]): (int(r[1]), int(r[2])) for r in conn.execute(
            text("select record_id, covered_upto, top_k from seqpare_progress"))}
    if not live:
        report.seconds = time.perf_counter() - t0
        return report
    if any(k != top_k for _, k in done.values()):
        # a different --top means different rows: start over rather than mix them
        with index.catalog.connect(write=True) as conn:
            conn.execute(text("delete from seqpare"))
            conn.execute(text("delete from seqpare_progress"))
        done = {}
    newest = max(live)
    todo = sorted(r for r in live if done.get(r, (0, 0))[0] < newest)
    report.up_to_date = len(live) - len(todo)
    overlap = index.overlap(live)
    ids_sorted = np.asarray(sorted(live), dtype=np.int64)

    pending: list[tuple[int, object]] = []  # (query record id, SearchResult)

    def commit() -> None:
        if not pending:
            return
        parts = []
        for q, res in pending:
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
            "record_id": pa.array([q for q, _ in pending], pa.int32()),
            "covered_upto": pa.array([newest] * len(pending), pa.int32()),
            "top_k": pa.array([top_k] * len(pending), pa.int32()),
            "computed_at": pa.array([_now()] * len(pending), pa.timestamp("us")),
        })
        qids = ",".join(str(q) for q, _ in pending)
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
        pending.clear()

    last_commit = time.perf_counter()
    if ray is not None and todo:
        from .distributed import truth_results, truth_shard_size

        size = truth_shard_size(ray, len(todo))
        starts = range(0, len(todo), size)

        def shards():  # each shard's intervals are read from the catalog when it is submitted
            for lo in starts:
                chunk = todo[lo : lo + size]
                sets = record_sets(index, chunk)
                yield [(q, sets[q], done.get(q, (0, 0))[0]) for q in chunk]

        finished = 0
        for results in truth_results(ray, index.path, ids_sorted, shards(), top_k):
            pending += results
            finished += len(results)
            if progress:
                progress(finished, len(todo), f"record {results[-1][0]}")
            if time.perf_counter() - last_commit > batch_seconds:
                commit()
                last_commit = time.perf_counter()
    for chunk_start in range(0, 0 if ray is not None else len(todo), 64):
        chunk = todo[chunk_start : chunk_start + 64]
        sets = record_sets(index, chunk)
        for j, q in enumerate(chunk):
            if progress:
                progress(chunk_start + j, len(todo), f"record {q}")
            pending.append((q, search_one(overlap, sets[q], done.get(q, (0, 0))[0], ids_sorted, top_k)))
            if time.perf_counter() - last_commit > batch_seconds:
                commit()
                last_commit = time.perf_counter()
    commit()
    if progress:
        progress(len(todo), len(todo), "")
    report.seconds = time.perf_counter() - t0
    return report
