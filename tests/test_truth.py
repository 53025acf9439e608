"""Exact seqpare inside an index: ground truth table, incremental and resumable
`gidx truth`, --top, rm, and the exact / re-ranked query modes.

The oracle is `gidx.seqpare.pair` run on the BED files themselves (no index,
no segments, no catalog): what the index stores must equal it.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import YEAST_BEDS, bed_files, sql1

from gidx.bed import read_bed
from gidx.index import Index, record_name_for
from gidx.seqpare import pair


@pytest.fixture(scope="module")
def yeast_sets(yeast_index):
    idx = Index.open(yeast_index)
    out = {}
    for p in bed_files(YEAST_BEDS):
        out[record_name_for(p, YEAST_BEDS)] = read_bed(p, idx.genome, aliases={"chrM": "chrmt"}).intervals
    return out


@pytest.fixture(scope="module")
def oracle(yeast_sets):
    """{(query name, target name): S} for every pair with S > 0, straight from the files."""
    out = {}
    for qn, q in yeast_sets.items():
        for tn, t in yeast_sets.items():
            s = pair(t, q).s
            if s > 0:
                out[(qn, tn)] = s
    return out


def stored(index) -> dict:
    rows = sql1(index, "select q.name, t.name, s from seqpare join records q on q.id = query_id "
                       "join records t on t.id = target_id")
    return {(a, b): s for a, b, s in rows}


def assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-6), key


def test_truth_all_pairs_equals_pairwise_oracle(yeast_copy, oracle):
    rep = Index.open(yeast_copy).truth()
    assert rep.queries == len(bed_files(YEAST_BEDS))
    got = stored(yeast_copy)
    assert_same(got, oracle)
    # self pairs are exact 1 for files without zero-length intervals
    assert all(got[(n, n)] == pytest.approx(1.0) for n, _ in got if (n, n) in got)
    # a second run has nothing to do
    rep2 = Index.open(yeast_copy).truth()
    assert rep2.queries == 0 and rep2.up_to_date == rep.queries


def test_truth_is_incremental_after_ingest(tmp_path, yeast_index, oracle):
    from conftest import YEAST_FASTA

    files = bed_files(YEAST_BEDS)
    idx = Index.create(tmp_path / "idx", fasta=YEAST_FASTA, genome_name="sacCer3", aliases={"chrM": "chrmt"})
    half = tmp_path / "half"
    for p in files[: len(files) // 2]:
        dst = half / p.relative_to(YEAST_BEDS)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dst)
    idx.ingest([half])
    idx.truth()
    before = stored(tmp_path / "idx")
    idx.ingest([YEAST_BEDS])  # the rest (the first half is skipped as already indexed)
    progress = sql1(tmp_path / "idx", "select max(covered_upto) from seqpare_progress")[0][0]
    assert progress < max(r for r, in sql1(tmp_path / "idx", "select id from records"))
    idx.truth()
    after = stored(tmp_path / "idx")
    # names of the first half are relative to `half`, i.e. the same relative paths
    assert_same(after, oracle)
    assert all(after[k] == before[k] for k in before)


def test_truth_resumes_after_a_kill(yeast_copy, oracle):
    from gidx.truth import compute_truth

    idx = Index.open(yeast_copy)
    seen = []

    def die_after_five(done, total, item):
        seen.append(item)
        if len(seen) > 5:
            raise KeyboardInterrupt  # a kill between two committed batches

    with pytest.raises(KeyboardInterrupt):
        compute_truth(idx, progress=die_after_five, batch_seconds=0)
    partial = sql1(yeast_copy, "select count(*) from seqpare_progress")[0][0]
    assert 0 < partial < len(bed_files(YEAST_BEDS))
    rep = idx.truth()
    assert rep.up_to_date == partial
    assert_same(stored(yeast_copy), oracle)


def test_truth_top_k_keeps_each_records_best(yeast_copy, oracle):
    Index.open(yeast_copy).truth(top_k=3)
    got = stored(yeast_copy)
    by_query: dict[str, list] = {}
    for (q, t), s in oracle.items():
        by_query.setdefault(q, []).append((s, t))
    want = {}
    for q, lst in by_query.items():
        for s, t in sorted(lst, key=lambda x: (-x[0], x[1]))[:3]:
            want[(q, t)] = s
    assert {q for q, _ in got} == set(by_query)
    for q in by_query:
        got_s = sorted((s for (qq, _), s in got.items() if qq == q), reverse=True)
        want_s = sorted((s for (qq, _), s in want.items() if qq == q), reverse=True)
        assert got_s == pytest.approx(want_s)


def test_rm_removes_truth_rows(yeast_copy):
    idx = Index.open(yeast_copy)
    idx.truth()
    name = sql1(yeast_copy, "select name from records order by id limit 1")[0][0]
    rid = sql1(yeast_copy, f"select id from records where name = '{name}'")[0][0]
    idx.rm([name])
    assert sql1(yeast_copy, f"select count(*) from seqpare where query_id = {rid} or target_id = {rid}")[0][0] == 0
    assert sql1(yeast_copy, f"select count(*) from seqpare_progress where record_id = {rid}")[0][0] == 0
    assert idx.truth().queries == 0  # nothing new to compare after a removal


def test_query_exact_and_rerank_agree_with_oracle(yeast_copy, yeast_sets, oracle):
    idx = Index.open(yeast_copy)
    qname = "winston_annotations/Scer_polIItranscripts-adjustedTSS"
    qfile = next(p for p in bed_files(YEAST_BEDS) if record_name_for(p, YEAST_BEDS) == qname)
    want = sorted(((s, t) for (q, t), s in oracle.items() if q == qname), key=lambda x: (-x[0], x[1]))
    exact = idx.query(qfile, k=10, exact=True)
    assert exact["record"].to_pylist()[0] == qname
    assert exact["exact_score"].to_numpy() == pytest.approx([s for s, _ in want[:10]])
    # re-ranking every record (P >= records) must give the exact ranking
    rr = idx.query(qfile, k=10, rerank=100)
    assert rr["exact_score"].to_numpy() == pytest.approx(exact["exact_score"].to_numpy())
    assert (rr.schema.metadata[b"gidx.mode"], exact.schema.metadata[b"gidx.mode"]) == (b"rerank", b"exact")
    # the stored results carry the exact score too
    qid = int(rr.schema.metadata[b"gidx.query_id"])
    rows = sql1(yeast_copy, f"select rank, exact_score from query_results where query_id = {qid} order by rank")
    assert [r[1] for r in rows] == pytest.approx(rr["exact_score"].to_pylist())
    # raw vector ranking: no exact scores, ranked by cosine
    vec = idx.query(qfile, k=10, rerank=None)
    assert vec["exact_score"].null_count == len(vec)
    assert list(vec["score"].to_numpy()) == sorted(vec["score"].to_numpy(), reverse=True)


def test_rerank_restricts_to_candidates(yeast_copy):
    """Only the vector search's top P are rescored: re-ranking reorders them, never
    brings in a record from outside (P below k is raised to k)."""
    idx = Index.open(yeast_copy)
    qfile = bed_files(YEAST_BEDS)[5]
    vec = idx.query(qfile, k=3, rerank=None, save=False)
    rr = idx.query(qfile, k=3, rerank=3, save=False)
    assert set(rr["record_id"].to_pylist()) == set(vec["record_id"].to_pylist())
    assert list(rr["exact_score"].to_numpy()) == sorted(rr["exact_score"].to_numpy(), reverse=True)
    exact = idx.query(qfile, k=3, exact=True, save=False)
    assert rr["exact_score"].to_numpy()[0] <= exact["exact_score"].to_numpy()[0]


def test_seqpare_cli_matches_pair(gidx_cli, yeast_sets):
    a, b = bed_files(YEAST_BEDS)[3], bed_files(YEAST_BEDS)[4]
    r = gidx_cli("seqpare", a, b, "--format", "json")
    assert r.code == 0, r.err
    got = json.loads(r.out)[0]
    want = pair(read_bed(a).intervals, read_bed(b).intervals)
    assert (got["n_target"], got["n_query"], got["tc"]) == (want.n_t, want.n_q, want.tc)
    assert got["s"] == pytest.approx(want.s) and got["teo"] == pytest.approx(want.teo)


def test_seqpare_cli_bad_input(gidx_cli, tmp_path):
    bad = tmp_path / "bad.bed"
    bad.write_text("chr1\t10\t5\n")
    r = gidx_cli("seqpare", bad, bad)
    assert r.code == 2
    assert len(r.error_lines) == 1 and f"{bad}:1:" in r.error_lines[0]
