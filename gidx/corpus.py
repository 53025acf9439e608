"""Training/evaluation corpora derived from real BED files by seeded perturbation.

Real collections are few (tens of files here); training M needs thousands of
records with *graded* similarity. :func:`make_corpus` turns each real file
into a **family** of records:

* the family root is the real file (intervals capped at ``max_intervals`` by a
  seeded sample that keeps file order); when more families than files are
  wanted, further roots are random halves of a file (``<stem>~h<i>``);
* member j of a family gets strength ``t_j`` spread evenly over
  ``[t_min, t_max]``, and its intervals are perturbed with that strength:
  - drop a fraction ``0.5·t`` of intervals,
  - shift a fraction ``t`` of intervals by ``N(0, t·length)`` bases,
  - widen/narrow a fraction ``t`` by a log-normal factor (σ = t),
  - add ``0.3·t·n`` intervals (half next to existing ones, half at random loci),
  - swap a fraction ``0.2·t`` of intervals for intervals of another real file,
  - every ``mix_every``-th member is additionally mixed 50/50 with another family's root
    (cross-family similarity);
* so S(member, root) falls roughly monotonically with t, members of one family
  are similar to each other in graded amounts, and families overlap where the
  real files overlap or mixing links them.

Files are written as ``<out>/<family>/<member>.bed`` so ``gidx ingest <out>``
names records ``<family>/<member>``; gidx train holds out whole families
(the part of the record name before ``/``), so held-out queries include records
derived from real files never seen in training. ``corpus.json`` in ``<out>``
records the parameters and, per record, its family, source file and strength.
Everything is determined by ``seed``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .intervals import IntervalSet


@dataclass(frozen=True)
class CorpusConfig:
    records: int = 1000
    family_size: int = 12
    max_intervals: int = 2000
    min_intervals: int = 30
    t_min: float = 0.05
    t_max: float = 0.9
    mix_every: int = 5
    seed: int = 0


def _cap(s: IntervalSet, n: int, rng) -> IntervalSet:
    if len(s) <= n:
        return s
    keep = np.sort(rng.choice(len(s), n, replace=False))
    return IntervalSet(s.chroms, s.chrom[keep], s.start[keep], s.end[keep])


def _sub(s: IntervalSet, mask) -> IntervalSet:
    return IntervalSet(s.chroms, s.chrom[mask], s.start[mask], s.end[mask])


def perturb(s: IntervalSet, t: float, rng, lengths: np.ndarray, donor: IntervalSet | None) -> IntervalSet:
    """One family member at strength t (see module docstring)."""
    n = len(s)
    keep = rng.random(n) >= 0.5 * t
    chrom, start, end = s.chrom[keep].copy(), s.start[keep].copy(), s.end[keep].copy()
    m = len(start)
    length = np.maximum(end - start, 1)
    sh = rng.random(m) < t
    start[sh] += np.round(rng.normal(0, t * length[sh])).astype(np.int64)
    end[sh] = start[sh] + length[sh]
    wd = rng.random(m) < t
    newlen = np.maximum(1, np.round(length[wd] * np.exp(rng.normal(0, max(t, 1e-3), wd.sum())))).astype(np.int64)
    mid = (start[wd] + end[wd]) // 2
    start[wd], end[wd] = mid - newlen // 2, mid - newlen // 2 + newlen
    n_add = int(round(0.3 * t * n))
    if n_add and m:
        near = rng.integers(0, m, n_add // 2)
        ac = chrom[near]
        alen = length[near]
        ast = start[near] + rng.integers(-5_000, 5_000, len(near))
        rc = rng.integers(0, len(lengths), n_add - len(near)).astype(np.int32)
        rlen = rng.choice(length, len(rc))
        rst = (rng.random(len(rc)) * np.maximum(lengths[rc] - rlen, 1)).astype(np.int64)
        chrom = np.concatenate([chrom, ac, rc]).astype(np.int32)
        start = np.concatenate([start, ast, rst])
        end = np.concatenate([end, ast + alen, rst + rlen])
    if donor is not None and len(donor) and len(start):
        k = int(round(0.2 * t * len(start)))
        if k:
            out = rng.choice(len(start), k, replace=False)
            src = rng.integers(0, len(donor), k)
            chrom[out], start[out], end[out] = donor.chrom[src], donor.start[src], donor.end[src]
    start = np.clip(start, 0, lengths[chrom] - 1)
    end = np.clip(np.maximum(end, start + 1), 1, lengths[chrom])
    order = np.lexsort((start, chrom))
    return IntervalSet(s.chroms, chrom[order], start[order], end[order])


def mix(a: IntervalSet, b: IntervalSet, rng) -> IntervalSet:
    ka, kb = rng.random(len(a)) < 0.5, rng.random(len(b)) < 0.5
    chrom = np.concatenate([a.chrom[ka], b.chrom[kb]])
    start = np.concatenate([a.start[ka], b.start[kb]])
    end = np.concatenate([a.end[ka], b.end[kb]])
    order = np.lexsort((start, chrom))
    return IntervalSet(a.chroms, chrom[order], start[order], end[order])


def write_bed(path: Path, s: IntervalSet) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    names = np.asarray(s.chroms, dtype=object)[s.chrom]
    with open(path, "w") as f:
        f.writelines(f"{c}\t{a}\t{b}\n" for c, a, b in zip(names, s.start.tolist(), s.end.tolist()))


def make_corpus(sources: list[Path], genome, out: Path, cfg: CorpusConfig = CorpusConfig(), progress=None) -> dict:
    """Write a derived corpus under ``out``; returns the manifest (also saved as ``corpus.json``)."""
    from .bed import read_bed
    from .errors import GidxError
    from .index import expand_paths, record_name_for

    rng = np.random.default_rng(cfg.seed)
    bases: list[tuple[str, str, IntervalSet]] = []
    skipped = []
    for path, root in expand_paths(sources):
        try:
            s = read_bed(path, genome, skip_unknown_chroms=True).intervals
        except Exception as e:  # unreadable or foreign-genome files are simply not used
            skipped.append(f"{path}: {str(e).splitlines()[0]}")
            continue
        if len(s) < cfg.min_intervals:
            skipped.append(f"{path}: {len(s)} intervals (< {cfg.min_intervals})")
            continue
        stem = record_name_for(path, root).replace("/", "_")
        bases.append((stem, str(path), _cap(s, cfg.max_intervals, rng)))
    if not bases:
        raise GidxError("corpus: no usable BED file among the sources")
    n_fam = max(1, -(-cfg.records // cfg.family_size))
    roots = list(bases)
    i = 0
    while len(roots) < n_fam:  # more families than files: random halves of files
        stem, src, s = bases[i % len(bases)]
        roots.append((f"{stem}~h{i // len(bases) + 1}", src, _sub(s, rng.random(len(s)) < 0.5)))
        i += 1
    roots = roots[:n_fam]
    lengths = np.asarray(genome.lengths, dtype=np.int64)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"config": asdict(cfg), "sources": [b[1] for b in bases], "skipped": skipped, "records": []}
    made = 0
    for f, (stem, src, root) in enumerate(roots):
        fam = f"f{f:04d}_{stem}"
        size = min(cfg.family_size, cfg.records - made)
        if size <= 0:
            break
        ts = np.linspace(cfg.t_min, cfg.t_max, size) if size > 1 else np.array([cfg.t_min])
        for j, t in enumerate(ts):
            donor = bases[int(rng.integers(len(bases)))][2]
            s = perturb(root, float(t), rng, lengths, donor)
            other = None
            if cfg.mix_every and j % cfg.mix_every == cfg.mix_every - 1 and len(roots) > 1:
                other = int(rng.integers(len(roots)))
                s = mix(s, roots[other][2], rng) if other != f else s
            name = f"{fam}/m{j:03d}"
            write_bed(out / f"{name}.bed", s)
            manifest["records"].append({"name": name, "family": fam, "source": src, "strength": round(float(t), 4),
                                        "mixed_with": roots[other][0] if other not in (None, f) else None,
                                        "n_intervals": len(s)})
            made += 1
            if progress:
                progress(made, cfg.records, name)
    (out / "corpus.json").write_text(json.dumps(manifest, indent=1))
    return manifest
