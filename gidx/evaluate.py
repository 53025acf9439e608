"""Ranking quality of set embeddings against exact seqpare (recall@k, Kendall tau).

Truth for query record q: the records r != q ranked by stored seqpare S(q, r)
(catalog table ``seqpare``; ties by record id), S > 0 only.

* **recall@k** = |method's top k ∩ exact top k| / min(k, #records with S > 0)
  (queries with no S > 0 neighbour are skipped);
* **Kendall tau@k** = tau-b between the method's scores and S over the
  *exact* top-k items (the ones that should come back). Without re-rank the
  method's score is the cosine; with re-rank P it is exact S for items among
  the vector top-P candidates and -inf (tied last) for items the candidate
  search missed -- so tau measures both candidate misses and ordering.
* ``rerank=P``: candidates = cosine top P, re-ordered by exact S (cosine
  breaks ties), as ``gidx query --rerank P`` does.

All in numpy on in-memory matrices: evaluation of 10^3 queries over 10^4
records takes well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .index import Index

KS = (1, 5, 10, 20, 50)


@dataclass
class Truth:
    """Exact seqpare neighbours: per query record, target ids sorted by S desc (self excluded)."""

    nbrs: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def from_arrays(cls, q: np.ndarray, t: np.ndarray, s: np.ndarray) -> "Truth":
        keep = (q != t) & (s > 0)
        q, t, s = q[keep], t[keep], s[keep]
        order = np.lexsort((t, -s, q))
        q, t, s = q[order], t[order], s[order]
        out = {}
        bounds = np.flatnonzero(np.diff(q)) + 1
        for lo, hi in zip(np.concatenate(([0], bounds)), np.concatenate((bounds, [len(q)]))):
            if hi > lo:
                out[int(q[lo])] = (t[lo:hi].astype(np.int64), s[lo:hi].astype(np.float64))
        return cls(out)

    def s_of(self, q: int, ids: np.ndarray) -> np.ndarray:
        t, s = self.nbrs.get(int(q), (np.zeros(0, np.int64), np.zeros(0)))
        lut = dict(zip(t.tolist(), s.tolist()))
        return np.array([lut.get(int(i), 0.0) for i in ids], dtype=np.float64)


def load_seqpare(index: "Index") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The catalog's seqpare rows as arrays (query_id, target_id, s)."""
    with index.catalog.connect() as conn:
        tbl = index.catalog.raw(conn).sql("select query_id, target_id, s from seqpare").to_arrow_table()
    return (tbl.column("query_id").to_numpy().astype(np.int64), tbl.column("target_id").to_numpy().astype(np.int64),
            tbl.column("s").to_numpy().astype(np.float64))


def check_truth(index: "Index") -> tuple[list[int], str]:
    """Live record ids and a data-version string; GidxError when the seqpare table is empty or stale."""
    from sqlalchemy import text

    from .errors import GidxError

    with index.catalog.connect() as conn:
        ids = sorted(int(r[0]) for r in conn.execute(text("select id from records")))
        prog = dict(conn.execute(text("select record_id, covered_upto from seqpare_progress")).fetchall())
        n_pairs, sum_s = conn.execute(text("select count(*), coalesce(sum(s), 0) from seqpare")).one()
    if not ids:
        raise GidxError("the index has no records (gidx ingest FILES first)")
    if not n_pairs:
        raise GidxError("no seqpare ground truth in the catalog: run `gidx truth` first")
    newest = max(ids)
    # a record with no progress row has no truth (new, or re-ingested after gidx rm: a new id;
    # or reset by rm under --top K); one whose progress stops below the newest id lacks only
    # its pairs with the newer records
    missing = [r for r in ids if r not in prog]
    behind = [r for r in ids if r in prog and prog[r] < newest]
    if missing or behind:
        if missing:
            what = (f"missing for {len(missing)} of {len(ids)} record{'s' if len(ids) > 1 else ''} "
                    "(new or changed since the last truth run)")
            if behind:
                others = f"{len(behind)} other{'s' if len(behind) > 1 else ''}"
                what += f"; {others} only lack their pairs with newer records"
        else:  # (a truth run killed part-way)
            what = f"incomplete for {len(behind)} of {len(ids)} records"
        raise GidxError(f"seqpare ground truth is {what}: run `gidx truth` first")
    version = f"records={len(ids)};max_id={newest};pairs={int(n_pairs)};sum_s={float(sum_s):.6f}"
    return ids, version


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall tau-b (handles ties; O(n^2), fine for top-k lists)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = len(x)
    if n < 2:
        return 1.0
    iu = np.triu_indices(n, 1)
    dx = np.sign(x[:, None] - x[None, :])[iu]
    dy = np.sign(y[:, None] - y[None, :])[iu]
    num = float((dx * dy).sum())
    den = np.sqrt(float((dx != 0).sum()) * float((dy != 0).sum()))
    return num / den if den > 0 else 1.0


def rank(ids: np.ndarray, mat: np.ndarray, q: int, qvec: np.ndarray, truth: Truth, rerank: int | None,
         limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Method's ranking for query record q (self excluded): (ids, cosine) best first, ``limit`` long."""
    cos = mat @ qvec
    cos = np.where(ids == q, -np.inf, cos)
    want = max(limit, rerank or 0)
    top = np.argpartition(-cos, min(want, len(cos) - 1))[:want] if want < len(cos) else np.arange(len(cos))
    top = top[np.lexsort((ids[top], -cos[top]))]
    top = top[np.isfinite(cos[top])]
    if rerank:
        s = truth.s_of(q, ids[top])
        top = top[np.lexsort((-cos[top], -s))]
    return ids[top[:limit]], cos[top[:limit]], ids[top], cos


def evaluate(ids: np.ndarray, mat: np.ndarray, queries: list[int], truth: Truth, ks=KS,
             rerank: int | None = None) -> dict:
    """recall@k and Kendall tau@k averaged over ``queries`` (rows of ``mat`` are unit vectors of ``ids``)."""
    ids = np.asarray(ids, dtype=np.int64)
    row = {int(r): j for j, r in enumerate(ids)}
    kmax = max(ks)
    rec = {k: [] for k in ks}
    tau = {k: [] for k in ks}
    for q in queries:
        if int(q) not in truth.nbrs or int(q) not in row:
            continue
        t_ids, t_s = truth.nbrs[int(q)]
        t_ids, t_s = t_ids[np.isin(t_ids, ids)], t_s[np.isin(t_ids, ids)]
        if not len(t_ids):
            continue
        got, _, cand, cos = rank(ids, mat, int(q), mat[row[int(q)]], truth, rerank, kmax)
        for k in ks:
            ex = t_ids[:k]
            rec[k].append(len(np.intersect1d(got[:k], ex)) / min(k, len(t_ids)))
            if rerank:
                in_cand = np.isin(ex, cand)
                score = np.where(in_cand, t_s[:k], -1.0)  # missed candidates tie last
            else:
                score = cos[[row[int(i)] for i in ex]]
            tau[k].append(kendall_tau_b(score, t_s[:k]))
    out = {"queries": len(rec[ks[0]])}
    for k in ks:
        out[f"recall@{k}"] = float(np.mean(rec[k])) if rec[k] else float("nan")
        out[f"tau@{k}"] = float(np.mean(tau[k])) if tau[k] else float("nan")
    return out


def sketch_encoder(index: "Index"):
    """(encoder id, PositionSketch) of the index's position sketch (its first ``sketch`` encoders row)."""
    import json

    from sqlalchemy import text

    from .sketch import PositionSketch

    with index.catalog.connect() as conn:
        row = conn.execute(text("select id, params from encoders where name = 'sketch' order by id limit 1")).first()
    if row is None:
        return None, PositionSketch()
    return int(row[0]), PositionSketch.from_params(json.loads(row[1]))


def stored_vectors(index: "Index", eid: int, encoder, record_ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(ids, unit matrix) of the given records under an encoder; rows missing from LanceDB are embedded now."""
    from .truth import record_sets

    got_ids, got = index.vectors.vectors(index.vector_table(eid, encoder)) if eid is not None else (np.zeros(0), None)
    pos = {int(r): j for j, r in enumerate(got_ids)}
    missing = [r for r in record_ids if r not in pos]
    mat = np.zeros((len(record_ids), encoder.dim), dtype=np.float32)
    for j, r in enumerate(record_ids):
        if r in pos:
            mat[j] = got[pos[r]]
    if missing:
        sets = record_sets(index, missing)
        emb = encoder.embed([sets[r] for r in missing], index.genome.lengths)
        where = {r: j for j, r in enumerate(record_ids)}
        for r, v in zip(missing, emb):
            mat[where[r]] = v
    nrm = np.linalg.norm(mat, axis=1, keepdims=True)
    return np.asarray(record_ids, dtype=np.int64), mat / np.maximum(nrm, 1e-12)


def eval_index(index: "Index", ks=KS, rerank: int = 200, queries: list[int] | None = None, n_queries: int = 200,
               seed: int = 0) -> tuple[list[dict], list[int]]:
    """Active encoder and position sketch side by side, with and without re-rank.

    Queries: the held-out records of the active model (never trained on), else
    a seeded sample of ``n_queries`` records; each row's ``query_set`` says which
    (``held-out`` or ``sampled``; ``given`` for ``queries``).
    """
    import json

    from sqlalchemy import text

    ids, _ = check_truth(index)
    truth = Truth.from_arrays(*load_seqpare(index))
    eid, enc = index.set_encoder()
    query_set = "given" if queries is not None else "sampled"
    if queries is None and enc.name == "model":
        with index.catalog.connect() as conn:
            ck = conn.execute(text("select checkpoint from models where id = :m"),
                              dict(m=int(enc.params()["model_id"]))).scalar()
        split = index.path / ck / "split.json"
        if split.exists():
            queries = json.loads(split.read_text())["heldout"]
            query_set = "held-out"
    if queries is None:
        rng = np.random.default_rng(seed)
        queries = sorted(rng.choice(ids, min(n_queries, len(ids)), replace=False).tolist())
    queries = [q for q in queries if q in set(ids)]
    label = f"model {enc.params().get('model_id')} (encoder {eid})" if enc.name == "model" else f"{enc.name} #{eid}"
    encoders = [(label, eid, enc)]
    sid, sk = sketch_encoder(index)
    if enc.name != "sketch":
        encoders.append((f"sketch #{sid}", sid, sk))
    rows = []
    for label, e, en in encoders:
        rid, mat = stored_vectors(index, e, en, ids)
        for rr in (None, rerank):
            m = evaluate(rid, mat, queries, truth, ks, rr)
            rows.append({"encoder": label, "rerank": rr or 0, **m, "query_set": query_set})
    return rows, queries
