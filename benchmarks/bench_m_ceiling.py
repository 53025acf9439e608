"""How far can the fixed (untrained) position stage of M go, and where are its errors?
(issue 15 groundwork). On an index with exact seqpare truth, for the held-out families of
`gidx train`'s default split:

1. where the untrained stage's misses sit (true rank of each missed top-20 neighbour; the
   S of the records that took their place, relative to the query's 20th S);
2. the length-class entries (`gidx.model.position_entries`) hashed into B buckets vs summed
   exactly (no collisions), ranked by cosine and by the S estimate d / (N_a + N_b - d);
   per-interval kernel variants (|v|^p renormalised, bins per interval);
3. a size-similarity term (RBF features of log N, weight and width chosen on the training
   families) appended to the untrained vectors.

    python benchmarks/bench_m_ceiling.py IDX      # IDX: gidx ingest + gidx truth done

Numpy only; ~4 min for 1,000 records of <= 1,000 intervals.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import time
from dataclasses import replace

import numpy as np

import gidx
from gidx.evaluate import Truth, evaluate, kendall_tau_b, load_seqpare
from gidx.model import ModelConfig, NumpyDeepSets, build_torch_model, position_entries
from gidx.train import split_records
from gidx.truth import record_sets


def load(path):
    idx = gidx.Index.open(path)
    with idx.catalog.connect() as conn:
        rows = idx.catalog.raw(conn).sql("select id, name, n_intervals from records order by id").fetchall()
    ids = np.array([r[0] for r in rows], np.int64)
    names = {int(r[0]): r[1] for r in rows}
    n = np.array([r[2] for r in rows], np.float64)
    return idx, ids, names, n, record_sets(idx, ids.tolist()), Truth.from_arrays(*load_seqpare(idx))


def sparse_vectors(cfg, ids, sets, power=1.0):
    """Per record: (sorted columns, summed values) of its position entries."""
    out = []
    for i in ids:
        s = sets[int(i)]
        own, col, val, _ = position_entries(cfg, s.chrom, s.start, s.end)
        if power != 1.0:
            v = np.sign(val) * np.abs(val) ** power
            n2 = np.bincount(own, weights=v * v, minlength=len(s.start))
            val = v / np.sqrt(np.maximum(n2[own], 1e-30))
        u, inv = np.unique(col, return_inverse=True)
        out.append((u, np.bincount(inv, weights=val)))
    return out


def inner_products(vecs, rows_of_queries):
    allc = np.unique(np.concatenate([c for c, _ in vecs]))
    loc = [np.searchsorted(allc, c) for c, _ in vecs]
    dense = np.zeros(len(allc))
    G = np.zeros((len(rows_of_queries), len(vecs)))
    for qi, j in enumerate(rows_of_queries):
        dense[loc[j]] = vecs[j][1]
        G[qi] = [(dense[lc] * v).sum() for lc, (_, v) in zip(loc, vecs)]
        dense[loc[j]] = 0
    return G, np.array([np.sqrt((v * v).sum()) for _, v in vecs])


def ranked_metrics(G, norms, n, ids, queries, row, truth, mode="cos"):
    rec, tau = [], []
    for qi, q in enumerate(queries):
        if q not in truth.nbrs:
            continue
        j = row[q]
        if mode == "cos":
            sc = G[qi] / np.maximum(norms * norms[j], 1e-30)
        else:
            d = np.maximum(G[qi], 0)
            sc = d / (n + n[j] - d)
        sc[j] = -np.inf
        top = ids[np.argsort(-sc, kind="stable")[:20]]
        t_ids, t_s = truth.nbrs[q]
        rec.append(len(np.intersect1d(top, t_ids[:20])) / min(20, len(t_ids)))
        tau.append(kendall_tau_b(sc[[row[int(t)] for t in t_ids[:20]]], t_s[:20]))
    return float(np.mean(rec)), float(np.mean(tau))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("index")
    a = ap.parse_args(argv)
    idx, ids, names, n, sets, truth = load(a.index)
    row = {int(r): j for j, r in enumerate(ids)}
    train, held = split_records(names, 0.15, 0)
    cfg = ModelConfig()
    print(f"{len(ids)} records; held out: {len(held)} records of families never trained on")

    # 1. the untrained stage's misses
    net = NumpyDeepSets(cfg, build_torch_model(cfg).export())
    mat = np.stack([net.embed_arrays(sets[int(i)].chrom, sets[int(i)].start, sets[int(i)].end, None) for i in ids])
    mat = mat / np.linalg.norm(mat, axis=1, keepdims=True)
    miss_rank, intruder = [], []
    for q in held:
        if q not in truth.nbrs:
            continue
        t_ids, t_s = truth.nbrs[q]
        cos = mat @ mat[row[q]]
        cos[row[q]] = -np.inf
        top = ids[np.argsort(-cos, kind="stable")[:20]]
        s20 = t_s[min(19, len(t_s) - 1)]
        miss_rank += [r + 1 for r, t in enumerate(t_ids[:20]) if t not in top]
        intruder += [truth.s_of(q, [t])[0] / s20 for t in top if t not in t_ids[:20]]
    h = np.histogram(miss_rank, bins=[1, 6, 11, 16, 21])[0]
    print(f"untrained stage: {len(miss_rank)} missed top-20 neighbours; true ranks 1-5 / 6-10 / 11-15 / 16-20: "
          f"{' / '.join(map(str, h))}; intruders' S / the 20th S, quartiles "
          f"{' / '.join(f'{x:.2f}' for x in np.quantile(intruder, [0.25, 0.5, 0.75]))}")

    # 2. hashing vs exact sums, kernel variants
    print("\n| position entries | held-out recall@20 | tau@20 |\n|---|---|---|")
    exact = replace(cfg, buckets=2 ** 61)
    for label, c, p, mode in [
            (f"hashed {cfg.buckets} (the default stage)", cfg, 1.0, "cos"),
            ("hashed 16384", replace(cfg, buckets=16384), 1.0, "cos"),
            ("hashed 65536", replace(cfg, buckets=65536), 1.0, "cos"),
            ("exact (no collisions)", exact, 1.0, "cos"),
            ("exact, ranked by S ~ d/(N_a+N_b-d)", exact, 1.0, "s"),
            ("exact, per-interval kernel v^2 renormalised", exact, 2.0, "cos"),
            ("exact, per-interval kernel v^0.5 renormalised", exact, 0.5, "cos"),
            ("exact, 4 bins per interval", replace(exact, bins_per_interval=4.0), 1.0, "cos"),
            ("exact, 16 bins per interval", replace(exact, bins_per_interval=16.0), 1.0, "cos")]:
        t0 = time.perf_counter()
        G, norms = inner_products(sparse_vectors(c, ids, sets, p), [row[q] for q in held])
        r, t = ranked_metrics(G, norms, n, ids, held, row, truth, mode)
        print(f"| {label} | {r:.3f} | {t:.3f} |  <!-- {time.perf_counter() - t0:.0f} s -->", flush=True)

    # 3. a learned size-similarity term
    centers = np.linspace(np.log(10), np.log(30000), 64)

    def with_size(beta, sigma):
        f = np.exp(-(np.log(n)[:, None] - centers[None, :]) ** 2 / (4 * sigma ** 2))
        f /= np.linalg.norm(f, axis=1, keepdims=True)
        m = np.hstack([mat, beta * f])
        return m / np.linalg.norm(m, axis=1, keepdims=True)

    base_t, base_h = evaluate(ids, mat, train, truth), evaluate(ids, mat, held, truth)
    best = max(((evaluate(ids, with_size(b, s), train, truth)["recall@20"], b, s)
                for b in (0.1, 0.2, 0.3, 0.5, 0.7) for s in (0.25, 0.5, 1.0, 2.0)))
    got = evaluate(ids, with_size(best[1], best[2]), held, truth)
    print(f"\nsize-similarity term (beta {best[1]}, sigma {best[2]}, chosen on training families): "
          f"train recall@20 {base_t['recall@20']:.3f} -> {best[0]:.3f}; "
          f"held-out {base_h['recall@20']:.3f} -> {got['recall@20']:.3f} (tau@20 {base_h['tau@20']:.3f} -> "
          f"{got['tau@20']:.3f})")


if __name__ == "__main__":
    main()
