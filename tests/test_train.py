"""Training from the seqpare graph: sampler rule, tiny run beats the untrained baseline,
resume after a kill, torchrun (gloo, 2 processes), activation rules, CLI errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import HG19_BEDS, HG19_SIZES, REPO, sql1

pytest.importorskip("torch")

TINY = dict(epochs=4, steps_per_epoch=8, seeds_per_batch=6, pos_per_seed=2, max_intervals=128, patience=3,
            val_fraction=0.25, val_k=5, lr=3e-3, pos_threshold=0.2)


def _tiny_model():
    from gidx.model import ModelConfig

    return ModelConfig(features="position", buckets=1024, hidden=32, chunk=64)


@pytest.fixture(scope="module")
def corpus_index(tmp_path_factory):
    """A tiny derived corpus (8 families x 6 records from the repo's real hg19 files), ingested, with truth."""
    from gidx.corpus import CorpusConfig, make_corpus
    from gidx.index import Index

    root = tmp_path_factory.mktemp("corpus")
    idx = Index.create(root / "idx", chrom_sizes=HG19_SIZES)
    make_corpus([HG19_BEDS], idx.genome, root / "bed",
                CorpusConfig(records=48, family_size=6, max_intervals=150, seed=1))
    rep = idx.ingest([root / "bed"])
    assert len(rep.added) == 48, rep.rejected
    idx.truth()
    return root / "idx"


@pytest.fixture
def idx_copy(corpus_index, tmp_path):
    from gidx.index import Index

    return Index.open(shutil.copytree(corpus_index, tmp_path / "idx"))


def test_corpus_is_seeded_and_graded(tmp_path):
    from gidx.corpus import CorpusConfig, make_corpus
    from gidx.genome import Genome
    from gidx.seqpare import pair
    from gidx.truth import record_sets  # noqa: F401
    from gidx.bed import read_bed

    g = Genome.from_chrom_sizes(HG19_SIZES)
    cfg = CorpusConfig(records=12, family_size=6, max_intervals=300, seed=5, mix_every=0)
    a = make_corpus([HG19_BEDS], g, tmp_path / "a", cfg)
    b = make_corpus([HG19_BEDS], g, tmp_path / "b", cfg)
    assert [r["name"] for r in a["records"]] == [r["name"] for r in b["records"]]
    for r in a["records"]:
        assert (tmp_path / "a" / f"{r['name']}.bed").read_bytes() == (tmp_path / "b" / f"{r['name']}.bed").read_bytes()
    fam = [r for r in a["records"] if r["family"] == a["records"][0]["family"]]
    sets = [read_bed(tmp_path / "a" / f"{r['name']}.bed", g).intervals for r in fam]
    s = [pair(sets[0], x).s for x in sets[1:]]
    assert s[0] > s[-1]  # weaker perturbation -> more similar to the lightest member


def test_sampler_never_calls_an_overlapping_neighbourhood_negative():
    from gidx.train import Graph, sample_batch

    rng = np.random.default_rng(0)
    n = 120
    q, t = rng.integers(0, n, 1500), rng.integers(0, n, 1500)
    s = rng.random(1500) ** 3
    g = Graph.from_arrays(q, t, s, pos_threshold=0.3, neg_max=0.05)
    nodes_all = list(range(n))
    for step in range(30):
        nodes = sample_batch(g, nodes_all, np.random.default_rng(step), 10, 3)
        S, P, N = g.masks(nodes)
        for i, a in enumerate(nodes):
            nb = g.neighbourhood(a)
            two_hop = set().union(*(g.neighbourhood(b) for b in nb)) if nb else set()
            for j, x in enumerate(nodes):
                if N[i, j]:
                    assert x != a and x not in nb and x not in two_hop and g.S(a, x) <= 0.05
                if P[i, j]:
                    assert g.S(a, x) >= 0.3 and not N[i, j]


def test_split_holds_out_whole_families():
    from gidx.train import split_records

    names = {i: f"fam{i // 5}/m{i % 5}" for i in range(50)}
    train, held = split_records(names, 0.2, 0)
    assert set(train).isdisjoint(held) and len(train) + len(held) == 50
    assert {names[r].split("/")[0] for r in train}.isdisjoint({names[r].split("/")[0] for r in held})
    assert (train, held) == split_records(names, 0.2, 0)


def _cli(monkeypatch, capsys, *args) -> tuple[int, str]:
    """Run the train/eval/models commands through cli.train's standalone entry point."""
    from gidx.cli.train import main

    monkeypatch.delenv("GIDX_INDEX", raising=False)
    monkeypatch.setattr(sys, "argv", ["gidx", *map(str, args)])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 0
    return code, capsys.readouterr().err


def test_truth_missing_or_stale_is_a_clear_error(hg19_copy, monkeypatch, capsys):
    code, err = _cli(monkeypatch, capsys, "train", "-i", hg19_copy)
    assert code == 2 and err.strip() == "Error: no seqpare ground truth in the catalog: run `gidx truth` first"
    from gidx.index import Index

    idx = Index.open(hg19_copy)
    idx.truth()
    bed = HG19_SIZES.parent.parent / "bed" / "hg19" / "chipseeker_geo" / "GSM1174480_ARmo_0M_peaks.bed.gz"
    assert not idx.ingest([bed]).added  # the same file again: skipped, truth stays fresh
    code, err = _cli(monkeypatch, capsys, "eval", "-i", hg19_copy, "-k", "5")
    assert code == 0, err
    n = len(idx.record_ids())
    assert idx.ingest([bed], name="again").added == ["again"]  # same contents, another record
    code, err = _cli(monkeypatch, capsys, "eval", "-i", hg19_copy, "-k", "5")
    assert code == 2 and f"missing for 1 of {n + 1} records" in err, err


def test_tiny_training_beats_untrained_and_activates(idx_copy):
    from gidx.train import TrainConfig, train

    res = train(idx_copy, _tiny_model(), TrainConfig(**TINY))
    hist = res.metrics["history"]
    assert hist[0]["epoch"] == 0
    assert hist[-1]["loss"] < hist[1]["loss"], hist  # it learns the training graph
    assert res.metrics["val_recall"] >= hist[0]["val_recall"]  # the best epoch is kept, never worse than untrained
    row = sql1(idx_copy.path, f"select status, set_encoder_id, metrics, hyperparams, data_version from models where id = {res.model_id}")[0]
    assert row[0] == "ready" and row[1] is not None
    m = json.loads(row[2])
    assert m["beats_sketch"] == (m["val_recall"] > m["sketch_val_recall"]) == res.activated
    active = sql1(idx_copy.path, "select value from settings where key = 'set_encoder_id'")[0][0]
    assert (active == str(row[1])) == res.activated
    n_rec = sql1(idx_copy.path, "select count(*) from records")[0][0]
    assert len(idx_copy.vectors.record_ids(f"model_{row[1]}")) == n_rec
    # the trained encoder answers queries through the Index (if active) and eval compares side by side
    from gidx.evaluate import eval_index
    from gidx.train import activate

    activate(idx_copy, res.model_id)
    rows, _ = eval_index(idx_copy, ks=(1, 5), rerank=10)
    assert [r["encoder"].split()[0] for r in rows] == ["model", "model", "sketch", "sketch"]
    from gidx.truth import record_sets

    t = idx_copy.query(record_sets(idx_copy, [1])[1], k=3, save=False)
    assert t.num_rows == 3


def test_tiny_training_raises_heldout_recall(idx_copy):
    from gidx.train import TrainConfig, train

    res = train(idx_copy, _tiny_model(), TrainConfig(**TINY))
    assert res.metrics["val_recall"] > res.metrics["history"][0]["val_recall"]


def test_killed_training_resumes(idx_copy):
    from gidx.train import TrainConfig, train

    cfg = TrainConfig(**{**TINY, "epochs": 3, "patience": 10})
    with pytest.raises(KeyboardInterrupt):
        train(idx_copy, _tiny_model(), cfg, stop_after_epochs=1)
    mid = sql1(idx_copy.path, "select id, status from models")
    assert mid and mid[0][1] == "training"
    assert (idx_copy.path / "models" / str(mid[0][0]) / "state.pt").exists()
    res = train(idx_copy, _tiny_model(), cfg)
    assert res.model_id == mid[0][0] and res.resumed_from == 1 and res.epochs == 3
    assert [h["epoch"] for h in res.history] == [0, 1, 2, 3]
    # same seed, uninterrupted: identical history (reproducible)
    fresh = train(idx_copy, _tiny_model(), cfg, fresh=True)
    assert fresh.model_id != res.model_id
    assert [round(h["val_recall"], 6) for h in fresh.history] == [round(h["val_recall"], 6) for h in res.history]


def test_models_activate_only_when_reembedded(idx_copy, monkeypatch, capsys):
    from gidx.train import TrainConfig, train

    with pytest.raises(KeyboardInterrupt):
        train(idx_copy, _tiny_model(), TrainConfig(**{**TINY, "epochs": 2}), stop_after_epochs=1)
    from gidx.errors import GidxError
    from gidx.train import activate

    mid = sql1(idx_copy.path, "select id from models")[0][0]
    with pytest.raises(GidxError, match="only a model whose re-embedding finished"):
        activate(idx_copy, mid)
    code, err = _cli(monkeypatch, capsys, "models", "activate", str(mid), "-i", idx_copy.path)
    assert code == 2 and err.startswith("Error: model #") and len(err.strip().splitlines()) == 1
    code, err = _cli(monkeypatch, capsys, "models", "list", "-i", idx_copy.path, "-f", "json")
    assert code == 0


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="no torchrun")
def test_torchrun_two_process_gloo(idx_copy):
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    import socket

    with socket.socket() as sock:  # a free port: a fixed one clashes with a parallel run
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [torchrun, "--nproc_per_node", "2", "--master_port", str(port), "-m", "gidx.cli.train", "train",
           "-i", str(idx_copy.path), "--epochs", "2", "--steps", "4", "--seeds", "4", "--per-seed", "2",
           "--max-intervals", "64", "--val-fraction", "0.25", "--val-k", "5", "--buckets", "1024",
           "--hidden", "32", "--quiet"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = sql1(idx_copy.path, "select status, hyperparams from models")
    assert len(rows) == 1 and rows[0][0] == "ready"
    assert json.loads(rows[0][1])["world_size"] == 2
