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


# ---- --top K from vector candidates (issue 13) ---------------------------------------
#
# A corpus of graded families derived from the bundled yeast files (160 records of up
# to 300 intervals): enough records that C candidates are a real restriction. The
# oracle is an all-pairs run (every pair with S > 0; the all-pairs rows are themselves
# checked against gidx.seqpare.pair above), cut to each record's top K by (S desc, id).


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory):
    from conftest import YEAST_FASTA

    from gidx.corpus import CorpusConfig, make_corpus

    out = tmp_path_factory.mktemp("truth_corpus") / "corpus"
    genome = Index.create(out.parent / "genome", fasta=YEAST_FASTA, genome_name="sacCer3").genome
    make_corpus([YEAST_BEDS], genome, out, CorpusConfig(records=160, family_size=8, max_intervals=300))
    return out


def _corpus_index(path, files) -> Index:
    from conftest import YEAST_FASTA

    idx = Index.create(path, fasta=YEAST_FASTA, genome_name="sacCer3", aliases={"chrM": "chrmt"})
    rep = idx.ingest(files)
    assert not rep.rejected
    return idx


@pytest.fixture(scope="module")
def corpus_index(tmp_path_factory, corpus_files):
    path = tmp_path_factory.mktemp("truth_corpus_idx") / "idx"
    _corpus_index(path, [corpus_files])
    return path


@pytest.fixture
def corpus_copy(corpus_index, tmp_path):
    return shutil.copytree(corpus_index, tmp_path / "corpus_idx")


@pytest.fixture(scope="module")
def all_pairs(corpus_index, tmp_path_factory):
    """{query name: (target names, S)} of every pair with S > 0, best first (ties by target id)."""
    path = shutil.copytree(corpus_index, tmp_path_factory.mktemp("truth_all_pairs") / "idx")
    Index.open(path).truth()
    return _rows_by_name(path)


def _rows_by_name(index) -> dict:
    rows = sql1(index, "select q.name, t.name, s from seqpare join records q on q.id = query_id "
                       "join records t on t.id = target_id order by q.name, s desc, t.id")
    out: dict[str, tuple[list, list]] = {}
    for q, t, s in rows:
        out.setdefault(q, ([], []))
        out[q][0].append(t)
        out[q][1].append(s)
    return out


def _certified(index) -> dict:
    return {n: c for n, c in sql1(index, "select r.name, p.certified from seqpare_progress p "
                                         "join records r on r.id = p.record_id")}


def _check_top(index, all_pairs: dict, k: int) -> tuple[int, int]:
    """Every stored S is exact; a certified record's rows are its all-pairs top K (same
    targets, same order); an uncertified one's are a top K of fewer records (rank by
    rank no better than the truth). Returns (certified, uncertified records whose rows
    differ from the truth)."""
    got = _rows_by_name(index)
    cert = _certified(index)
    assert set(cert) == set(all_pairs) | set(cert)
    n_cert = wrong_uncert = 0
    for q in cert:
        want_t, want_s = (lst[:k] for lst in all_pairs.get(q, ([], [])))
        got_t, got_s = got.get(q, ([], []))
        exact = dict(zip(*all_pairs.get(q, ([], []))))
        for t, s in zip(got_t, got_s):
            assert s == pytest.approx(exact[t], abs=1e-12), (q, t)
        if cert[q]:
            n_cert += 1
            assert got_t == want_t, q
        else:
            assert len(got_s) <= len(want_s)
            assert all(g <= w + 1e-12 for g, w in zip(got_s, want_s)), q
            wrong_uncert += got_t != want_t
    return n_cert, wrong_uncert


def test_top_k_from_candidates_certified_rows_are_all_pairs_rows(corpus_copy, all_pairs):
    from gidx.truth import compute_truth

    rep = compute_truth(Index.open(corpus_copy), top_k=10, candidates=20)
    assert (rep.queries, rep.candidates) == (160, 20)
    assert rep.certified + rep.uncertified == 160 and rep.certified > 0 and rep.uncertified > 0
    # fewer exact searches than one-vs-all (160 per record), more than C (the extension and the bound)
    assert 160 * 20 < rep.searched < 160 * 160
    n_cert, _ = _check_top(corpus_copy, all_pairs, 10)
    assert n_cert == rep.certified
    assert sql1(corpus_copy, "select distinct top_k, candidates from seqpare_progress") == [(10, 20)]


def test_top_k_tiny_candidates_are_flagged(corpus_copy, all_pairs):
    """C = K: most records cannot be certified, and some of them really do miss a pair;
    the certified ones never do."""
    from gidx.truth import compute_truth

    rep = compute_truth(Index.open(corpus_copy), top_k=5, candidates=5)
    assert rep.uncertified > rep.certified
    n_cert, wrong = _check_top(corpus_copy, all_pairs, 5)
    assert n_cert == rep.certified
    assert wrong > 0  # the flag is not a formality on this corpus


def test_top_k_certified_everywhere_when_the_bound_leaves_few(corpus_copy, all_pairs):
    """With C = 100 of 160 records, the interval-count bound leaves at most C others to
    search: every record is certified and its rows are the all-pairs top K, the same
    rows as searching every record (--candidates 0)."""
    from gidx.truth import compute_truth

    rep = compute_truth(Index.open(corpus_copy), top_k=10, candidates=100)
    assert rep.certified == 160 and rep.uncertified == 0
    assert _check_top(corpus_copy, all_pairs, 10) == (160, 0)
    by_candidates = _rows_by_name(corpus_copy)
    rep0 = compute_truth(Index.open(corpus_copy), top_k=10, candidates=0)  # a changed C starts over
    assert (rep0.queries, rep0.certified, rep0.searched) == (160, 160, 0)
    assert _rows_by_name(corpus_copy) == by_candidates
    assert sql1(corpus_copy, "select distinct candidates, certified from seqpare_progress") == [(0, True)]


def test_top_k_is_incremental(tmp_path, corpus_files, all_pairs):
    """Half the corpus, truth, the other half, truth again: the old records search only
    the new ids (their vector candidates among them) and merge with their stored rows.
    With every target settled (C = 100) the rows are those of a from-scratch run; with
    C = 20 certified records still have exactly the all-pairs rows."""
    from gidx.truth import compute_truth

    fams = sorted(p for p in corpus_files.iterdir() if p.is_dir())
    for c in (100, 20):
        idx = _corpus_index(tmp_path / f"c{c}", fams[: len(fams) // 2])
        first = compute_truth(idx, top_k=10, candidates=c)
        assert first.queries == 80
        idx.ingest(fams[len(fams) // 2 :])
        rep = compute_truth(idx, top_k=10, candidates=c)
        assert (rep.queries, rep.up_to_date) == (160, 0)
        newest = sql1(tmp_path / f"c{c}", "select max(id) from records")[0][0]
        assert sql1(tmp_path / f"c{c}", "select distinct covered_upto from seqpare_progress") == [(newest,)]
        n_cert, _ = _check_top(tmp_path / f"c{c}", all_pairs, 10)
        if c == 100:
            assert n_cert == 160
        else:
            assert 0 < n_cert < 160
        # nothing left to do
        assert compute_truth(idx, top_k=10, candidates=c).queries == 0


def test_top_k_resumes_after_a_kill(corpus_copy, tmp_path, all_pairs):
    from gidx.truth import compute_truth

    clean = shutil.copytree(corpus_copy, tmp_path / "clean")
    compute_truth(Index.open(clean), top_k=10, candidates=20)
    idx = Index.open(corpus_copy)
    seen = []

    def die(done, total, item):
        seen.append(item)
        if len(seen) > 40:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compute_truth(idx, top_k=10, candidates=20, progress=die, batch_seconds=0)
    partial = sql1(corpus_copy, "select count(*) from seqpare_progress")[0][0]
    assert 0 < partial < 160
    rep = compute_truth(idx, top_k=10, candidates=20)
    assert (rep.up_to_date, rep.queries) == (partial, 160 - partial)
    _check_top(corpus_copy, all_pairs, 10)
    # the same candidates and rows as an uninterrupted run
    assert _rows_by_name(corpus_copy) == _rows_by_name(clean)
    assert _certified(corpus_copy) == _certified(clean)


def test_record_bounds_are_sound(yeast_copy, oracle):
    """On the real yeast files: the interval-count bound is >= the exact S of every pair,
    and a target left out by open_targets never has S >= the threshold given."""
    from gidx.truth import RecordBounds, record_sets

    idx = Index.open(yeast_copy)
    ids = {n: int(i) for i, n in sql1(yeast_copy, "select id, name from records")}
    live = np.asarray(sorted(ids.values()), np.int64)
    bounds = RecordBounds.from_catalog(idx, live)
    sets = record_sets(idx, live.tolist())
    n = dict(sql1(yeast_copy, "select id, n_intervals from records"))
    assert dict(zip(bounds.ids.tolist(), bounds.n.tolist())) == n
    for qn, q in ids.items():
        s_of = {ids[t]: s for (a, t), s in oracle.items() if a == qn}
        for s_k in (0.0, 1e-3, 0.01, 0.05, 0.2, 0.5):
            opened = bounds.open_targets(sets[q], 0, np.zeros(0, np.int64), s_k, cap=len(live))
            assert opened is not None
            must = {t for t, s in s_of.items() if s > 0 and s >= s_k}
            assert must <= set(opened.tolist()), (qn, s_k)
        # searched targets and ids up to `above` are never reopened
        some = live[:5]
        opened = bounds.open_targets(sets[q], int(live[2]), some, 0.0, cap=len(live))
        assert not set(opened.tolist()) & (set(some.tolist()) | set(live[live <= live[2]].tolist()))


def test_cli_truth_candidates(gidx_cli, corpus_copy):
    r = gidx_cli("truth", "-i", corpus_copy, "--top", "5", "--candidates", "10")
    assert r.code == 0, r.err
    assert "certified exact" in r.err and "160 record(s)" in r.err
    assert sql1(corpus_copy, "select distinct top_k, candidates from seqpare_progress") == [(5, 10)]
    r = gidx_cli("truth", "-i", corpus_copy, "--candidates", "10")
    assert r.code == 2 and "--candidates C needs --top K" in r.err
    r = gidx_cli("truth", "-i", corpus_copy, "--top", "5", "--candidates", "3")
    assert r.code == 2 and "below --top" in r.err


def test_top_k_on_ray_equals_single_process(corpus_copy, tmp_path):
    """--ray: the driver finds the vector candidates (in the same chunks), workers search
    and bound: the same rows and progress marks as one process."""
    ray = pytest.importorskip("ray")
    import logging

    from gidx.truth import compute_truth

    one = shutil.copytree(corpus_copy, tmp_path / "one")
    t1 = compute_truth(Index.open(one), top_k=10, candidates=20)
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, logging_level=logging.WARNING)
    try:
        tr = compute_truth(Index.open(corpus_copy), top_k=10, candidates=20, ray="auto")
    finally:
        ray.shutdown()
    assert (tr.queries, tr.pairs, tr.certified, tr.searched) == (t1.queries, t1.pairs, t1.certified, t1.searched)
    for q in ("select * exclude (computed_at) from seqpare_progress order by record_id",
              "select * from seqpare order by query_id, target_id"):
        assert sql1(corpus_copy, q) == sql1(one, q)


def test_top_k_in_worker_processes_equals_threads(corpus_copy, tmp_path, monkeypatch, gidx_cli):
    """Big runs search in spawned worker processes (GIDX_TRUTH_PROCESSES forces them
    here): the same rows, progress marks and counts as the threads of one process."""
    from gidx.truth import compute_truth

    one = shutil.copytree(corpus_copy, tmp_path / "one")
    monkeypatch.setenv("GIDX_TRUTH_PROCESSES", "0")
    t1 = compute_truth(Index.open(one), top_k=10, candidates=20)
    monkeypatch.setenv("GIDX_TRUTH_PROCESSES", "2")
    tp = compute_truth(Index.open(corpus_copy), top_k=10, candidates=20)
    assert (tp.queries, tp.pairs, tp.certified, tp.searched) == (t1.queries, t1.pairs, t1.certified, t1.searched)
    for q in ("select * exclude (computed_at) from seqpare_progress order by record_id",
              "select * from seqpare order by query_id, target_id"):
        assert sql1(corpus_copy, q) == sql1(one, q)
    # a malformed setting: one line, exit 2, the stored truth untouched
    before = sql1(corpus_copy, "select count(*) from seqpare")
    monkeypatch.setenv("GIDX_TRUTH_PROCESSES", "two")
    r = gidx_cli("truth", "-i", corpus_copy, "--top", "5")  # another K would start over: not before the check
    assert r.code == 2 and len(r.error_lines) == 1 and "GIDX_TRUTH_PROCESSES must be a whole number" in r.err
    assert sql1(corpus_copy, "select count(*) from seqpare") == before


def test_top_k_without_a_mirror(corpus_copy, all_pairs):
    """A vector mirror that went missing: the query records' vectors are re-embedded and
    the run is as sound as ever (every S exact, certified rows the all-pairs rows)."""
    from gidx.truth import compute_truth

    shutil.rmtree(corpus_copy / "vectors.mirror")
    rep = compute_truth(Index.open(corpus_copy), top_k=10, candidates=20)
    assert rep.queries == 160 and rep.certified > 0
    n_cert, _ = _check_top(corpus_copy, all_pairs, 10)
    assert n_cert == rep.certified
