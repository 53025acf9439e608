"""``gidx check``: verify that the stores of an index agree, and repair what can be.

The catalog is the source of truth. Everything else is derived from it and
written before the catalog commit that makes a record visible, so the only
state a crash can leave is *orphans*: vectors, overlap segments or memo
chunks that no committed record uses. Orphans are harmless (every read
filters by the catalog's record ids) and ``--repair`` removes them. Anything
else found here (a record without its vector, counts that disagree, a memo
tile that no longer matches its encoder) is a real problem and is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .index import Index


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)  # must not happen
    orphans: list[str] = field(default_factory=list)  # leftovers of interrupted work, harmless
    repaired: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_index(index: "Index", repair: bool = False, memo_samples: int = 64) -> CheckReport:
    from sqlalchemy import text

    from .truth import record_sets

    rep = CheckReport()
    with index.catalog.connect() as conn:
        records = {int(r[0]): int(r[1]) for r in conn.execute(text("select id, n_intervals from records"))}
        counted = {int(r[0]): int(r[1]) for r in conn.execute(
            text("select record_id, count(*) from intervals group by record_id"))}
        truth_orphans = conn.execute(text(
            "select count(*) from seqpare where query_id not in (select id from records) "
            "or target_id not in (select id from records)")).scalar()
        progress_orphans = conn.execute(text(
            "select count(*) from seqpare_progress where record_id not in (select id from records)")).scalar()
        result_orphans = conn.execute(text(
            "select count(*) from query_results where record_id not in (select id from records)")).scalar()
        encoders = conn.execute(text("select id, name from encoders where kind = 'set'")).fetchall()
    rep.checked["records"] = len(records)
    rep.checked["intervals"] = sum(counted.values())

    # catalog: interval rows agree with record counts
    for rid, n in records.items():
        if counted.get(rid, 0) != n:
            rep.problems.append(f"record {rid}: catalog says {n} intervals, intervals table has {counted.get(rid, 0)}")
    stray = sorted(set(counted) - set(records))
    if stray:
        rep.problems.append(f"intervals of {len(stray)} unknown record id(s): {stray[:5]}")
    for what, n in (("seqpare rows", truth_orphans), ("seqpare_progress rows", progress_orphans),
                    ("query_results rows", result_orphans)):
        if n:
            rep.problems.append(f"{n} {what} point at records that do not exist")

    # vectors: the active set encoder's table holds every record exactly once
    eid, enc = index.set_encoder()
    active = index.vector_table(eid, enc)
    live = set(records)
    for table in index.vectors.tables():
        ids = index.vectors.record_ids(table)
        have = set(int(i) for i in ids)
        orphans = have - live
        if orphans:
            rep.orphans.append(f"{table}: {len(orphans)} vector row(s) of records not in the catalog")
            if repair:
                index.vectors.prune(table, live)
                rep.repaired.append(f"{table}: removed {len(orphans)} orphan vector row(s)")
        dups = index.vectors.duplicates(table)
        if dups:
            rep.problems.append(f"{table}: duplicate vectors for record(s) {dups[:5]}")
        if table == active:
            missing = live - have
            rep.checked["vectors"] = len(have & live)
            if missing:
                rep.problems.append(f"{table}: no vector for {len(missing)} record(s), e.g. {sorted(missing)[:5]}")
                if repair:  # derived data: re-embed from the catalog's intervals
                    sets = record_sets(index, sorted(missing))
                    ids = sorted(sets)
                    index.vectors.add(table, np.asarray(ids), enc.embed([sets[i] for i in ids], index.genome.lengths))
                    rep.repaired.append(f"{table}: re-embedded {len(ids)} record(s)")
    if records and active not in index.vectors.tables():
        rep.problems.append(f"active vector table {active} is missing")
    elif records and index.vectors.mirror._segments(active):
        _check_mirror(index, active, live, rep, repair)

    # overlap structure: every record present with its interval count
    from .seqpare import OverlapIndex

    ov = OverlapIndex.open(index.path / "segments", live)  # as stored (Index.overlap refuses a short one)
    got = set(int(i) for i in ov.record_ids)
    rep.checked["overlap_records"] = len(got)
    if got != live:
        lacking = sorted(live - got)
        rep.problems.append(f"overlap structure lacks {len(lacking)} record(s), e.g. {lacking[:5]}")
        if repair:  # derived data: rebuild from the catalog's intervals
            from .seqpare import OverlapIndex

            sets = record_sets(index, lacking)
            OverlapIndex.write_segment(
                index.path / "segments",
                np.repeat(np.asarray(lacking, dtype=np.int64), [len(sets[r]) for r in lacking]),
                *(np.concatenate([getattr(sets[r], a) for r in lacking]) for a in ("chrom", "start", "end")),
                records=np.asarray(lacking, dtype=np.int64))  # records with 0 intervals too
            rep.repaired.append(f"overlap structure: added {len(lacking)} record(s) from the catalog")
    both = np.array(sorted(got & live), dtype=np.int64)
    if len(both):
        n_t = ov.n_t(both)
        bad = [int(r) for r, n in zip(both, n_t) if records[int(r)] != int(n)]
        if bad:
            rep.problems.append(f"overlap structure has wrong interval counts for record(s) {bad[:5]}")
    if repair:  # compaction rewrites live records only: orphan segment rows go
        index.maintain(repair=True)
        rep.repaired.append("overlap segments compacted")

    # tile memo: recompute a sample of stored tiles and compare
    try:
        from .memo import verify_index_memos
    except ImportError:  # memo not part of this build
        verify_index_memos = None
    if verify_index_memos is not None:
        for line in verify_index_memos(index, samples=memo_samples, repair=repair):
            (rep.repaired if line.startswith("refilled") else rep.problems).append(line)
    if repair:  # report what is still wrong after the repairs
        after = check_index(index, repair=False, memo_samples=memo_samples)
        after.repaired, after.orphans = rep.repaired, rep.orphans
        return after
    return rep


def _check_mirror(index, table: str, live: set[int], rep, repair: bool) -> None:
    """The vector mirror (memory-mapped copy the searches read) and its codes agree with
    LanceDB, block by block. Live records missing from it are not a problem (maintain
    and searches copy them over)."""
    from .vectors import _unit_rows

    mirror, wrong, checked = index.vectors.mirror, [], 0
    live_ids = np.fromiter(live, np.int64)
    for ids, vecs in index.vectors.lance_blocks(table):
        keep = np.isin(ids, live_ids)
        ids, vecs = ids[keep], vecs[keep]
        pos, found = mirror.rows_of(table, ids)
        if not found.any():
            continue
        unit, at = _unit_rows(vecs[found]), pos[found]
        bad = ~np.all(np.abs(mirror.gather(table, at) - unit) <= 1e-6, axis=1)
        lo, hi = mirror.codes_at(table, at)
        want_lo, want_hi = mirror.codes_of(table, unit)
        bad |= ~(lo == want_lo).all(axis=1) | ~(hi == want_hi).all(axis=1)
        wrong += ids[found][bad].tolist()
        checked += int(found.sum())
    rep.checked["vector_mirror"] = checked
    if len(wrong):
        rep.problems.append(f"{table}: vector mirror differs from LanceDB for {len(wrong)} record(s), "
                            f"e.g. {wrong[:5]}")
        if repair:  # derived data: rewrite it from LanceDB
            mirror.drop(table)
            n = index.vectors.fill_mirror(table)
            rep.repaired.append(f"{table}: vector mirror rewritten from LanceDB ({n} rows)")
