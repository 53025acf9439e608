"""VectorStore on real-ish data: position-sketch vectors of families of perturbed subsets
of the real hg19 peak files (the scale corpus' generator, small), float16 storage, the
mirror's brute force, its code scan (CODES_MIN_ROWS lowered so that a 3,000-row table is
scanned), the code kernels, search_many, iter_blocks, and the policy of ``maintain``
(ANN_MIN_ROWS lowered so that a 3,000-row table gets LanceDB's index)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

import gidx.vectors as V
from gidx.vectors import VectorStore

from conftest import HG19_BEDS, HG19_SIZES

FAMILIES, MEMBERS = 150, 20  # 3,000 stored rows
ZERO = timedelta(0)


def _family_vectors(n_families: int, seed: int, held_out: int = 0):
    """(stored rows (n_families * MEMBERS, 1536), held-out members (held_out, 1536)):
    family roots are random subsets (100-400 intervals) of the chipseeker GEO peak
    files, members the root perturbed at strengths 0.05..0.9, held-out queries further
    members of random families."""
    from gidx.bed import read_bed
    from gidx.corpus import perturb
    from gidx.genome import Genome
    from gidx.intervals import IntervalSet
    from gidx.sketch import PositionSketch

    genome = Genome.from_chrom_sizes(HG19_SIZES)
    lengths = np.asarray(genome.lengths, dtype=np.int64)
    bases = [read_bed(p, genome, skip_unknown_chroms=True).intervals for p in sorted(HG19_BEDS.glob("*.bed.gz"))]
    enc = PositionSketch()
    rng = np.random.default_rng(seed)
    roots = []
    for _ in range(n_families):
        src = bases[int(rng.integers(len(bases)))]
        keep = np.sort(rng.choice(len(src), min(len(src), int(rng.integers(100, 400))), replace=False))
        roots.append(IntervalSet(src.chroms, src.chrom[keep], src.start[keep], src.end[keep]))
    sets = [perturb(r, float(t), rng, lengths, bases[int(rng.integers(len(bases)))])
            for r in roots for t in np.linspace(0.05, 0.9, MEMBERS)]
    qsets = [perturb(roots[int(rng.integers(n_families))], float(rng.uniform(0.05, 0.9)), rng, lengths,
                     bases[int(rng.integers(len(bases)))]) for _ in range(held_out)]
    return enc.embed(sets, lengths), (enc.embed(qsets, lengths) if qsets else np.zeros((0, enc.dim), np.float32))


@pytest.fixture(scope="module")
def data():
    rows, queries = _family_vectors(FAMILIES, seed=7, held_out=40)
    fresh, _ = _family_vectors(10, seed=8)  # 200 rows added after the index is built
    return rows, queries, fresh


def _store(tmp_path, rows, ids=None) -> VectorStore:
    vs = VectorStore(tmp_path / "vectors.lance")
    ids = np.arange(len(rows), dtype=np.int64) if ids is None else ids
    for s in range(0, len(rows), 256):
        vs.add("t", ids[s: s + 256], rows[s: s + 256])
    return vs


def _brute(rows: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """float32 brute-force top k ids (ties by id)."""
    u = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    s = u @ (q / np.linalg.norm(q))
    o = np.lexsort((ids, -s))[:k]
    return ids[o]


def _recall(got, want, k) -> float:
    return len(np.intersect1d(got[:k], want[:k])) / k


def test_float16_storage_round_trips(tmp_path, data):
    rows = data[0][:600]
    vs = _store(tmp_path, rows)
    ids, stored = vs.vectors("t")
    assert stored.dtype == np.float16 and vs._dtype(vs._table("t")) == np.float16
    assert vs.mirror.dtype("t") == np.float16
    # LanceDB and the mirror hold the same bits
    raw = np.concatenate(vs.mirror._entry("t").rows)
    pos, found = vs.mirror.rows_of("t", ids)
    assert found.all() and np.array_equal(raw[pos].view(np.uint16), stored.view(np.uint16))
    # within float16 precision of the unit rows, exactly unit after the mirror's renormalisation
    u = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    assert np.abs(stored[np.argsort(ids)].astype(np.float32) - u).max() < 1e-3
    unit = vs.mirror.load("t")[1]
    assert np.array_equal(vs.mirror.gather("t", pos), unit[pos])
    assert np.allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-6)
    # a stored vector scores ~1 against itself; cosines match float32 within ~1e-4
    q = rows[17]
    got = vs.cosine("t", np.arange(600), q)
    assert got[17] == pytest.approx(1.0, abs=1e-6)
    assert np.abs(got - u @ (q / np.linalg.norm(q))).max() < 2e-4
    # 3 KB per row in LanceDB + 3 KB in the mirror + 128 B of codes, plus overheads
    disk = sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file())
    assert disk / len(rows) < 8192


def test_float32_tables_of_older_versions_keep_working(tmp_path, data):
    import lancedb
    import pyarrow as pa

    rows = data[0][:300]
    db = lancedb.connect(str(tmp_path / "vectors.lance"))
    db.create_table("t", pa.table({  # what the previous gidx wrote: float32, raw rows
        "record_id": pa.array(np.arange(200, dtype=np.int64)),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(rows[:200].reshape(-1)), rows.shape[1])}))
    vs = VectorStore(tmp_path / "vectors.lance")
    vs.add("t", np.arange(200, 300), rows[200:])
    assert vs._dtype(vs._table("t")) == np.float32 and vs.vectors("t")[1].dtype == np.float32
    ids, sims = vs.search("t", rows[250], 10, np.arange(300))
    assert ids[0] == 250 and sims[0] == pytest.approx(1.0, abs=1e-6)
    assert list(ids) == list(_brute(rows, np.arange(300), rows[250], 10))
    assert vs.mirror.dtype("t") == np.float32  # rebuilt from LanceDB as float32 unit rows


def test_iter_blocks_every_row_once(tmp_path, data):
    rows = data[0][:1000]
    vs = _store(tmp_path, rows)
    for source in ("mirror", "lancedb"):
        if source == "lancedb":
            vs.mirror.drop("t")
        got = list(vs.iter_blocks("t", rows=300))
        assert all(len(i) <= 300 and r.dtype == np.float32 for i, r in got)
        ids = np.concatenate([i for i, _ in got])
        assert sorted(ids.tolist()) == list(range(1000)), source
        unit = np.concatenate([r for _, r in got])
        assert np.allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-6)
        u = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        assert np.abs(unit - u[ids]).max() < 1e-3


def test_running_top_k_equals_a_full_sort():
    """search_many's running top k (first block by one partition, later ones by a
    threshold) keeps exactly each query's k best finite scores over all blocks, whatever
    the block sizes (smaller or larger than k) and rows skipped (-inf)."""
    rng = np.random.default_rng(1)
    for _ in range(40):
        m, k = int(rng.integers(1, 20)), int(rng.integers(1, 50))
        top, seen_s, seen_i, base = V._TopK(m, k), [], [], 0
        for _ in range(int(rng.integers(1, 6))):
            n = int(rng.integers(1, 150))
            s = rng.random((m, n)).astype(np.float32)
            s[rng.random((m, n)) < 0.4] = -np.inf
            ids = np.arange(base, base + n)
            base += n
            top.push(ids, s)
            seen_s.append(s)
            seen_i.append(np.broadcast_to(ids, (m, n)))
        S, ids_all = np.concatenate(seen_s, 1), np.concatenate(seen_i, 1)
        got_i, got_s = top.result(k)
        for r in range(m):
            o = np.argsort(-S[r], kind="stable")[:k]
            o = o[np.isfinite(S[r][o])]
            assert got_i[r][got_i[r] >= 0].tolist() == ids_all[r][o].tolist()
            assert np.allclose(got_s[r][: len(o)], S[r][o])


def test_search_many_equals_search_without_index(tmp_path, data):
    rows, queries, _ = data
    rows = rows[:1500]
    vs = _store(tmp_path, rows)
    live = np.setdiff1d(np.arange(1500), np.arange(0, 1500, 7))  # every 7th row an orphan
    got_ids, got_sims = vs.search_many("t", queries[:12], 50, live)
    assert got_ids.shape == (12, 50) and got_sims.dtype == np.float64
    for q, gi, gs in zip(queries[:12], got_ids, got_sims):
        ids, sims = vs.search("t", q, 50, live)
        assert np.isin(gi, live).all()
        assert np.allclose(gs, sims, atol=1e-6)
        assert _recall(gi, ids, 50) >= 0.98  # equal up to near-ties in the last float bits
    # fewer live rows than the limit: padded
    ids, sims = vs.search_many("t", queries[:3], 10, np.array([3, 5]))
    assert (ids[:, :2] >= 0).all() and (ids[:, 2:] == -1).all() and np.isneginf(sims[:, 2:]).all()
    # brute force streamed from LanceDB (no mirror) gives the same
    vs.mirror.drop("t")
    again = vs.search_many("t", queries[:12], 50, live)
    assert all(_recall(a, b, 50) >= 0.98 for a, b in zip(again[0], got_ids))


def test_maintain_builds_and_keeps_the_ann_index(tmp_path, data, monkeypatch):
    rows, queries, fresh = data
    monkeypatch.setattr(V, "ANN_MIN_ROWS", 2000)
    n = len(rows)
    vs = _store(tmp_path, rows[:1500])
    rep = vs.maintain("t", np.arange(1500), grace=ZERO)
    assert "build" not in rep["actions"] and vs.ann_stats("t") is None
    for s in range(1500, n, 256):
        vs.add("t", np.arange(s, min(n, s + 256)), rows[s: s + 256])
    live = np.arange(n)
    rep = vs.maintain("t", live, grace=ZERO)
    assert "build" in rep["actions"], rep
    st = vs.ann_stats("t")
    assert st["type"] == "IVF_RQ" and st["indexed"] == n and st["unindexed"] == 0 and st["trained_rows"] == n
    assert vs.mirror.n_rows("t") == n  # the mirror stays: searches read it
    disk = sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file())
    assert disk / n < 8192

    # recall of LanceDB's index against float32 brute force, at the limits queries use
    # (it serves while the mirror lacks rows of a big table: here none)
    ids_all = np.arange(n)
    monkeypatch.setattr(V, "CODES_MIN_ROWS", 1000)
    vs.mirror.drop("t")
    for limit in (20, 200):
        rec = [_recall(vs.search("t", q, limit, live)[0], _brute(rows, ids_all, q, 20), 20) for q in queries]
        assert np.mean(rec) >= 0.95, (limit, np.mean(rec))
    assert not vs.mirror._segments("t")  # a big table's search does not fill the mirror ...
    rep = vs.maintain("t", live, grace=ZERO)
    assert rep["actions"] == ["mirror_fill"] and vs.mirror.n_rows("t") == n  # ... maintain does

    # rows added after the build are found at once (unindexed: flat scan), and after maintain
    fids = np.arange(10_000, 10_000 + len(fresh))
    for s in range(0, len(fresh), 256):
        vs.add("t", fids[s: s + 256], fresh[s: s + 256])
    live2 = np.concatenate([live, fids])
    for j in (0, 77, 199):
        got, sims = vs.search("t", fresh[j], 5, live2)
        assert got[0] == fids[j] and sims[0] == pytest.approx(1.0, abs=1e-3)
    assert vs.ann_stats("t")["unindexed"] == len(fresh)
    # in the middle of an ingest 200 new rows (< ANN_FOLD_FRACTION of the table) wait ...
    assert vs.maintain("t", live2, grace=ZERO, final=False)["actions"] == []
    # ... at its end they are folded into the index
    rep = vs.maintain("t", live2, grace=ZERO)
    assert rep["actions"] == ["optimize"] and vs.ann_stats("t")["unindexed"] == 0
    assert vs.search("t", fresh[77], 5, live2)[0][0] == fids[77]

    # orphans (ids not in live) are never returned
    got, _ = vs.search("t", fresh[77], 30, live2[live2 != fids[77]])
    assert fids[77] not in got and len(got) == 30
    # a live set much smaller than the table: the id-range prefilter still finds them
    got, _ = vs.search("t", fresh[77], 5, fids)
    assert got[0] == fids[77] and np.isin(got, fids).all()

    # search_many by per-query code scans agrees with search
    monkeypatch.setattr(V, "SEARCH_MANY_BRUTE_ROWS", 0)
    many_ids, many_sims = vs.search_many("t", queries[:6], 20, live2)
    for q, mi, ms in zip(queries[:6], many_ids, many_sims):
        ids, sims = vs.search("t", q, 20, live2)
        assert _recall(mi, ids, 20) >= 0.95 and ms[0] == pytest.approx(sims[0], abs=1e-6)
    cos = vs.cosine("t", np.array([5, 10_003, 99_999]), rows[5])
    assert cos[0] == pytest.approx(1.0, abs=1e-5) and np.isfinite(cos[1]) and np.isnan(cos[2])

    # grown past ANN_RETRAIN_GROWTH x the rows it was trained on: rebuilt
    monkeypatch.setattr(V, "ANN_RETRAIN_GROWTH", 1.05)
    rep = vs.maintain("t", live2, grace=ZERO)
    assert rep["actions"] == ["rebuild"] and vs.ann_stats("t")["trained_rows"] == n + len(fresh)
    assert vs.search("t", fresh[3], 5, live2)[0][0] == fids[3]


@pytest.fixture
def every_kernel():
    """Runs a test body at each SIMD level of gidx._codes this CPU has (AVX-512, AVX2,
    scalar), then restores the CPU's best."""
    from gidx import _codes

    best = _codes.kernel(-1)
    yield [lvl for lvl in (2, 1, 0) if lvl <= best]
    _codes.kernel(-1)


def test_code_kernels_equal_numpy(every_kernel):
    from gidx import _codes

    rng = np.random.default_rng(3)
    codes = rng.integers(0, 256, (3001, 64), dtype=np.uint8)
    q = rng.integers(0, 256, 64, dtype=np.uint8)
    mask = rng.random(3001) < 0.8
    rows16 = rng.standard_normal((500, 1537)).astype(np.float16)  # odd width: the kernels' tails
    qf = rng.standard_normal(1537).astype(np.float32)
    idx = rng.integers(0, 500, 300)
    for level in every_kernel:
        assert _codes.kernel(level) == level
        for words in (8, 4, 3):
            want = np.bitwise_count(codes[:, : words * 8] ^ q[: words * 8]).sum(axis=1)
            got = np.empty(3001, np.uint16)
            _codes.hamming(codes, 8, q, words, got, mask.view(np.uint8))
            assert np.array_equal(got[mask], want[mask]) and (got[~mask] == 0xFFFF).all(), (level, words)
            sub = np.empty(len(idx), np.uint16)
            _codes.hamming(codes, 8, q, words, sub, None, idx)
            assert np.array_equal(sub, want[idx])
        dot, sq = np.empty(len(idx), np.float32), np.empty(len(idx), np.float32)
        _codes.dot16(rows16, 1537, qf, idx, dot, sq)
        r64 = rows16[idx].astype(np.float64)
        assert np.allclose(dot, r64 @ qf, rtol=1e-5, atol=1e-3) and np.allclose(sq, (r64 ** 2).sum(1), rtol=1e-5)
    # hamming's counts per distance are the distances' histogram
    got, hist = np.empty(3001, np.uint16), np.zeros(1 << 16, np.int64)
    _codes.hamming(codes, 8, q, 8, got, mask.view(np.uint8), None, hist)
    assert np.array_equal(hist, np.bincount(got, minlength=1 << 16))
    # smallest: the m smallest distances (ties by position), never a skipped row; the same
    # from a histogram given
    dist = rng.integers(0, 40, 5000).astype(np.uint16)
    dist[rng.random(5000) < 0.3] = 0xFFFF
    hist = np.bincount(dist, minlength=1 << 16).astype(np.int64)
    for m in (0, 1, 17, 500, 3400, 6000):
        out = np.empty(max(m, 1), np.int64)
        k = _codes.smallest(dist, m, out)
        want = np.lexsort((np.arange(5000), dist))[: m]
        want = np.sort(want[dist[want] != 0xFFFF])
        assert k == len(want) and np.array_equal(out[:k], want), m
        out2 = np.empty(max(m, 1), np.int64)
        assert _codes.smallest(dist, m, out2, hist) == k and np.array_equal(out2[:k], want)
    with pytest.raises(ValueError):
        _codes.hamming(codes, 8, q, 9, np.empty(3001, np.uint16))  # words > row width
    with pytest.raises(IndexError):
        _codes.hamming(codes, 8, q, 8, np.empty(1, np.uint16), None, np.array([3001]))


def test_code_scan_finds_what_brute_force_finds(tmp_path, data, monkeypatch):
    """Above CODES_MIN_ROWS a search scans 1-bit codes and scores the nearest exactly:
    recall@20 against float32 brute force, orphans and superseded rows never returned,
    scores the cosine of the stored rows, the same after compaction, and segments of
    older versions (no codes) get theirs."""
    rows, queries, fresh = data
    monkeypatch.setattr(V, "CODES_MIN_ROWS", 1000)
    n = len(rows)
    vs = _store(tmp_path, rows)
    live = np.arange(n)
    ids_all = np.arange(n)
    for limit in (20, 200):
        rec = [_recall(vs.search("t", q, limit, live)[0], _brute(rows, ids_all, q, 20), 20) for q in queries]
        assert np.mean(rec) >= 0.98, (limit, np.mean(rec))
    # the code scan and the matrix give the same scores for what both return
    ids, sims = vs.search("t", queries[0], 20, live)
    assert np.allclose(sims, vs.cosine("t", ids, queries[0]), atol=2e-6)
    assert list(ids) == list(_brute(rows, ids_all, queries[0], 20)) or _recall(ids, _brute(
        rows, ids_all, queries[0], 20), 20) >= 0.9
    # orphans: every 3rd row not live
    live3 = ids_all[ids_all % 3 != 0]
    for q in queries[:5]:
        got, _ = vs.search("t", q, 50, live3)
        assert len(got) == 50 and np.isin(got, live3).all()
    # a record written twice (a retried batch): the newest row, once
    vs.add("t", np.array([5]), fresh[:1])
    got, sims = vs.search("t", fresh[0], 5, live)
    assert got[0] == 5 and sims[0] == pytest.approx(1.0, abs=1e-3) and list(got).count(5) == 1
    # compaction: fewer segments, the same answers (the superseded row of 5 dropped)
    before = [vs.search("t", q, 20, live3) for q in queries[:8]]
    segs = len(vs.mirror._segments("t"))
    assert segs > V._MAX_SEGMENTS
    vs.mirror.compact("t", live3)
    assert len(vs.mirror._segments("t")) <= V._MAX_SEGMENTS and vs.mirror.n_rows("t") < n
    after = [vs.search("t", q, 20, live3) for q in queries[:8]]
    for (bi, bs), (ai, as_) in zip(before, after):
        assert list(bi) == list(ai) and np.allclose(bs, as_)
    # segments without codes (written before codes existed) get them on first use
    d = vs.mirror._dir("t")
    for f in list(d.glob("*.lo.npy")) + list(d.glob("*.hi.npy")):
        f.unlink()
    fresh_store = VectorStore(tmp_path / "vectors.lance")
    again = [fresh_store.search("t", q, 20, live3) for q in queries[:8]]
    for (bi, _), (ai, _) in zip(after, again):
        assert list(bi) == list(ai)
    assert len(list(d.glob("*.lo.npy"))) == len(vs.mirror._segments("t"))
