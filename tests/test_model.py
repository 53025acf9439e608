"""The M model: permutation invariance, checkpointed chunks, numpy inference = torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from gidx.intervals import IntervalSet
from gidx.model import (ModelConfig, NumpyDeepSets, build_torch_model, kmer_features, level_bucket_sums, position_entries,
                        position_vector, sequence_features)

from conftest import HG19_SIZES

torch = pytest.importorskip("torch")


def _genome():
    from gidx.genome import Genome

    return Genome.from_chrom_sizes(HG19_SIZES)


def _set(n=700, seed=0, chroms=None):
    rng = np.random.default_rng(seed)
    c = rng.integers(0, 4, n).astype(np.int32)
    s = rng.integers(0, 5_000_000, n).astype(np.int64)
    e = s + rng.integers(1, 4000, n)
    return IntervalSet(chroms or tuple(f"chr{i}" for i in range(1, 23)), c, s, e)


def _perturbed(model):
    """Move phi away from its identity initialisation so the tests exercise the MLP."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


@pytest.mark.parametrize("features", ["position", "sequence", "both"])
def test_permutation_invariant_and_numpy_matches_torch(features):
    g = _genome()
    cfg = ModelConfig(features=features, buckets=256, chunk=128, hidden=32)
    s = _set(chroms=tuple(g.names))
    seq = sequence_features(cfg, g, s)
    model = _perturbed(build_torch_model(cfg))
    v = model.forward_set(s.chrom, s.start, s.end, seq).detach().numpy()
    p = np.random.default_rng(3).permutation(len(s))
    vp = model.forward_set(s.chrom[p], s.start[p], s.end[p], seq[p]).detach().numpy()
    assert np.allclose(v, vp, atol=1e-5)
    assert np.isclose(np.linalg.norm(v), 1.0, atol=1e-5)
    net = NumpyDeepSets(cfg, model.export())
    assert np.allclose(net.embed_arrays(s.chrom, s.start, s.end, seq), v, atol=1e-5)
    assert np.allclose(net.embed_arrays(s.chrom[p], s.start[p], s.end[p], seq[p]), v, atol=1e-5)


def test_each_interval_counts_once_duplicates_change_the_embedding():
    cfg = ModelConfig(features="position", buckets=256, hidden=16)
    model = _perturbed(build_torch_model(cfg))
    s = _set(50)
    dup = IntervalSet(s.chroms, np.concatenate([s.chrom, s.chrom[:1]]), np.concatenate([s.start, s.start[:1]]),
                      np.concatenate([s.end, s.end[:1]]))
    e = np.zeros((len(s), 0), np.float32)
    a = model.forward_set(s.chrom, s.start, s.end, e)
    b = model.forward_set(dup.chrom, dup.start, dup.end, np.zeros((len(dup), 0), np.float32))
    assert not torch.allclose(a, b)  # a mean over intervals, not over distinct bins


def test_checkpointed_chunks_give_the_same_gradients():
    g = _genome()
    cfg_small = ModelConfig(features="both", buckets=256, chunk=97, hidden=32)
    cfg_whole = ModelConfig(features="both", buckets=256, chunk=10**9, hidden=32)
    sets = [_set(500, seed=i, chroms=tuple(g.names)) for i in range(3)]
    seqs = [sequence_features(cfg_small, g, s) for s in sets]
    grads = []
    for cfg, ckpt in ((cfg_small, True), (cfg_whole, False)):
        model = _perturbed(build_torch_model(cfg))
        emb = model([(s.chrom, s.start, s.end, q) for s, q in zip(sets, seqs)], checkpointed=ckpt)
        loss = (emb @ emb.T).triu(1).sum() + emb[:, :5].pow(2).sum()
        loss.backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters()})
    for k in grads[0]:
        assert torch.allclose(grads[0][k], grads[1][k], atol=1e-5, rtol=1e-4), k


@pytest.mark.parametrize("assign", ["length", "all"])
def test_chunked_position_sums_equal_the_whole_set_scatter(assign):
    """The position stage as per-level sums over chunks (flat memory) is the same function as the former
    whole-set scatter of weighted entries: same numpy embeddings for the same weights, same torch gradients."""
    kw = dict(resolutions=(1_000, 10_000, 100_000)) if assign == "all" else {}
    cfg = ModelConfig(features="position", assign=assign, buckets=256, chunk=37, **kw)
    model = _perturbed(build_torch_model(cfg))  # level gains != 1, power != 1
    weights = model.export()
    net = NumpyDeepSets(cfg, weights)
    for seed in range(3):
        s = _set(600, seed=seed)
        e = np.zeros((len(s), 0), np.float32)
        # before: every entry at once, weighted per entry, summed by column
        m = position_vector(cfg, s.chrom, s.start, s.end, weights["level_gain"].astype(np.float64))
        want = net.rho(m / len(s)).astype(np.float32)
        got = net.embed_arrays(s.chrom, s.start, s.end, e)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
        V = level_bucket_sums(cfg, s.chrom, s.start, s.end)
        assert V.shape == (len(cfg.resolutions), cfg.buckets)
        assert np.allclose(V, level_bucket_sums(cfg, s.chrom, s.start, s.end, chunk=10**9))
        # torch: gradients equal to the former index_add scatter over all entries
        model.zero_grad()
        v = model.forward_set(s.chrom, s.start, s.end, e)
        (v[:50] ** 3).sum().backward()
        g_new = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
        model.zero_grad()
        _, col, val, lev = position_entries(cfg, s.chrom, s.start, s.end)
        w = torch.from_numpy(val) * model.level_gain.double()[torch.from_numpy(lev)]
        m_old = torch.zeros(cfg.buckets * cfg.pos_blocks, dtype=torch.float64).index_add(0, torch.from_numpy(col), w)
        v_old = model.rho(m_old / len(s))
        (v_old[:50] ** 3).sum().backward()
        assert torch.allclose(v, v_old, atol=1e-6)
        assert set(g_new) == {"level_gain", "power", "gain"}
        for k, p in model.named_parameters():
            if p.grad is not None:
                assert torch.allclose(g_new[k], p.grad, rtol=1e-5, atol=1e-8), k


def test_position_ids_and_kmer_features_are_deterministic():
    g = _genome()
    cfg = ModelConfig(buckets=1024)
    s = _set(200, chroms=tuple(g.names))
    own, col, val, lev = position_entries(cfg, s.chrom, s.start, s.end)
    assert (col >= 0).all() and (col < cfg.buckets).all() and set(own.tolist()) == set(range(200))
    assert np.allclose(np.bincount(own, weights=val * val), 1.0)  # spread=l2: every interval has unit weight
    for x, y in zip((own, col, val, lev), position_entries(cfg, s.chrom, s.start, s.end)):
        assert np.array_equal(x, y)
    k1 = kmer_features(g, s, 128, 12, 64)
    ok = (s.end - s.start) >= 12  # shorter intervals hold no 12-mer: zero features
    assert np.allclose(np.linalg.norm(k1, axis=1)[ok], 1.0, atol=1e-5) and not k1[~ok].any()
    assert np.array_equal(k1, kmer_features(g, s, 128, 12, 64))


def test_untrained_sketch_config_is_exactly_the_position_sketch():
    from gidx.sketch import PositionSketch

    cfg = ModelConfig.sketch()
    net = NumpyDeepSets(cfg, build_torch_model(cfg).export())
    for seed in range(3):
        s = _set(300, seed=seed)
        s = IntervalSet(s.chroms, s.chrom, s.start, s.start + (s.end - s.start) * (1 + 20 * (seed == 2)))
        v = net.embed_arrays(s.chrom, s.start, s.end, np.zeros((len(s), 0), np.float32))
        assert np.allclose(v, PositionSketch().embed_one(s), atol=1e-6)


def test_untrained_model_is_sketch_like():
    """Untrained, the model is a (length-class) position sketch: a set is far closer to a lightly
    perturbed copy than to an unrelated set."""
    cfg = ModelConfig(features="position", buckets=8192)
    net = NumpyDeepSets(cfg, build_torch_model(cfg).export())
    s, o = _set(800, seed=1), _set(800, seed=2)
    other = IntervalSet(o.chroms, o.chrom + 8, o.start, o.end)  # elsewhere in the genome
    keep = np.random.default_rng(0).random(800) < 0.8
    near = IntervalSet(s.chroms, s.chrom[keep], s.start[keep], s.end[keep])
    e = lambda x: net.embed_arrays(x.chrom, x.start, x.end, np.zeros((len(x), 0), np.float32))  # noqa: E731
    assert e(s) @ e(near) > 0.85 and abs(e(s) @ e(other)) < 0.3


def test_inference_does_not_import_torch(tmp_path):
    cfg = ModelConfig(features="position", buckets=256, hidden=16)
    from gidx.model import save_numpy

    save_numpy(tmp_path / "m.npz", cfg, build_torch_model(cfg).export())
    code = (
        "import sys, numpy as np\n"
        "from gidx.model import NumpyDeepSets\n"
        f"net = NumpyDeepSets.load(r'{tmp_path / 'm.npz'}')\n"
        "v = net.embed_arrays(np.zeros(3, np.int32), np.array([0, 10, 20]), np.array([5, 15, 25]), np.zeros((3, 0), np.float32))\n"
        "assert abs(float(v @ v) - 1) < 1e-5\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_memo_sequence_features_are_the_tile_memo_embeddings(yeast_copy):
    """x_i's sequence half from the index's tile memo = gidx.embed's composed interval embeddings."""
    from gidx.embed import interval_embeddings
    from gidx.index import Index
    from gidx.truth import record_sets

    idx = Index.open(yeast_copy)
    rid = min(idx.record_ids())
    s = record_sets(idx, [rid])[rid]
    cfg = ModelConfig(features="both", sequence="memo", seq_in=idx.sequence_encoder().dim)
    got = sequence_features(cfg, idx.genome, s, idx)
    want = interval_embeddings(s, idx.genome, idx.tiling(), idx.memo(), mode="tiles")
    assert got.shape == (len(s), idx.sequence_encoder().dim)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert np.linalg.norm(got, axis=1).max() > 0  # real sequence, not zeros
    with pytest.raises(ValueError, match="need the index"):
        sequence_features(cfg, idx.genome, s, None)
