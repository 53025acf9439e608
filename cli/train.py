"""``gidx train``, ``gidx eval``, ``gidx corpus``, ``gidx models list|activate``.

Hooked into the main app by ``register(app)``; also runnable on its own
(``python -m gidx.cli.train train ...``, e.g. under ``torchrun``).
Only typer and the standard library at import time.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import DEFAULT_INDEX, FormatOpt, IndexOpt, OutOpt, QuietOpt, open_index
from .output import Bar, Format, check_output, emit

def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _warn_if_tiny(idx, k: int, option: str) -> None:
    """recall@k over fewer than ~5k records compares lists that hold most of the index:
    every method scores about 1.0, so the numbers say nothing. Said once the ground truth
    is known to be there (its absence is the one error line to show)."""
    import os

    from gidx.evaluate import check_truth

    n = len(check_truth(idx)[0])
    if os.environ.get("RANK", "0") != "0":  # under torchrun: rank 0 says it
        return
    if n < 5 * k:
        _err(f"Warning: the index has {n} records, too few to measure recall@{k} (every method finds most of "
             f"them): that needs about {5 * k} (5 x k) or more; ingest more records or lower {option}")


def train_cmd(
    index: IndexOpt = DEFAULT_INDEX,
    features: Annotated[str, typer.Option(help="Per-interval input: position, sequence or both.")] = "position",
    sequence_source: Annotated[
        str, typer.Option("--sequence-source",
                          help="Sequence features: memo (interval embeddings from the tile memo of the index's "
                               "encoder) or kmer (k-mers of each interval's central window).")
    ] = "memo",
    loss: Annotated[str, typer.Option(help="listwise (softmax over the batch, S as soft targets), triplet (online "
                                           "batch-hard) or contrastive.")] = "triplet",
    epochs: Annotated[int, typer.Option(help="Maximum epochs.")] = 20,
    steps: Annotated[int, typer.Option(help="Optimizer steps per epoch (over all ranks).")] = 40,
    patience: Annotated[int, typer.Option(help="Stop after this many epochs without a better validation recall.")] = 4,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 3e-2,
    margin: Annotated[float, typer.Option(help="Loss margin (cosine distance).")] = 0.2,
    pos_threshold: Annotated[float, typer.Option(help="seqpare S at or above which two records are neighbours.")] = 0.2,
    neg_max: Annotated[float, typer.Option(help="A negative must have S at most this with the anchor.")] = 0.05,
    rank_weight: Annotated[float, typer.Option(help="Weight of the graded (order-by-S) loss term.")] = 0.5,
    seeds: Annotated[int, typer.Option(help="Sub-graph seeds per batch.")] = 16,
    per_seed: Annotated[int, typer.Option(help="Positive neighbours per seed.")] = 3,
    max_intervals: Annotated[int, typer.Option(help="Subsample larger sets to this many intervals per step.")] = 4096,
    val_fraction: Annotated[float, typer.Option(help="Fraction of record groups held out.")] = 0.15,
    val_within: Annotated[float, typer.Option(
        help="Also hold out this fraction of each training group's records.")] = 0.0,
    val_k: Annotated[int, typer.Option(help="k of the validation recall@k.")] = 20,
    buckets: Annotated[int, typer.Option(help="Hashed dims of the position sketch block.")] = 4096,
    bins_per_interval: Annotated[float, typer.Option(
        help="Bins an interval covers at its length class's resolution.")] = 8.0,
    seq_dim: Annotated[int, typer.Option(help="Projected sequence feature dims.")] = 32,
    hidden: Annotated[int, typer.Option(help="phi hidden width.")] = 128,
    chunk: Annotated[int, typer.Option(help="Intervals per checkpointed phi chunk.")] = 4096,
    seed: Annotated[int, typer.Option(help="Seed of everything random.")] = 0,
    name: Annotated[str, typer.Option(help="Model name in the catalog.")] = "M",
    fresh: Annotated[bool, typer.Option("--fresh", help="Start a new model instead of resuming an unfinished one.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Train the M model from the stored seqpare graph, re-embed all records, activate it if it beats the sketch.

    Rerunning the same command resumes an interrupted run. Distributed: torchrun --nproc_per_node N $(which gidx) train
    """
    from gidx.errors import GidxError
    from gidx.model import ModelConfig
    from gidx.train import TrainConfig, train

    try:
        seq_in = {}
        if sequence_source == "memo" and features != "position":  # the index's sequence encoder sets the width
            seq_in = {"seq_in": open_index(index).sequence_encoder().dim}
        mcfg = ModelConfig(features=features, sequence=sequence_source, buckets=buckets,
                           bins_per_interval=bins_per_interval, seq_dim=seq_dim, hidden=hidden, chunk=chunk,
                           seed=seed, **seq_in)
    except ValueError as e:
        raise GidxError(str(e)) from None
    tcfg = TrainConfig(loss=loss, epochs=epochs, steps_per_epoch=steps, patience=patience, lr=lr, margin=margin,
                       pos_threshold=pos_threshold, neg_max=neg_max, rank_weight=rank_weight, seeds_per_batch=seeds,
                       pos_per_seed=per_seed, max_intervals=max_intervals, val_fraction=val_fraction,
                       val_within=val_within, val_k=val_k,
                       seed=seed, name=name)
    idx = open_index(index)
    _warn_if_tiny(idx, val_k, "--val-k")
    with Bar("train", quiet) as bar:
        res = train(idx, mcfg, tcfg, fresh=fresh, log=None if quiet else _err, progress=bar)
    if quiet:
        return


def eval_cmd(
    index: IndexOpt = DEFAULT_INDEX,
    k: Annotated[int, typer.Option("-k", "--top", help="Largest k reported (recall@1,5,10,20,50 up to it).")] = 20,
    rerank: Annotated[int, typer.Option("--rerank", "-P", help="Candidates re-ranked exactly in the re-rank rows "
                                                               "(default 200, as gidx query).")] = 200,
    queries: Annotated[int, typer.Option(help="Sampled query records when no trained model is active.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the query sample.")] = 0,
    fmt: FormatOpt = Format.table,
    out: OutOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """recall@k and Kendall tau of the active set encoder and the position sketch against exact seqpare.

    Queries: the held-out records of the active trained model (never trained on), else
    a seeded sample of --queries records."""
    import pyarrow as pa

    from gidx.evaluate import KS, eval_index

    check_output(fmt, out)
    ks = tuple(x for x in KS if x <= k) or (k,)
    if k not in ks:
        ks = (*ks, k)
    idx = open_index(index)
    _warn_if_tiny(idx, k, "-k")
    rows, qs = eval_index(idx, ks=ks, rerank=rerank, n_queries=queries, seed=seed)
    if not quiet:
        what = ("held-out records of the active model (never trained on)" if rows[0].get("query_set") == "held-out"
                else f"sampled records (seed {seed})")
        _err(f"queries: {rows[0]['queries']} {what}; truth = exact seqpare top-k")
    cols = ["encoder", "rerank", "queries"] + [f"recall@{x}" for x in ks] + [f"tau@{x}" for x in ks]
    emit(pa.table({c: [r[c] for r in rows] for c in cols}), fmt, out)


def corpus_cmd(
    out: Annotated[
        Path, typer.Argument(metavar="OUT", help="Folder to write the derived BED files (and corpus.json) into.")
    ],
    sources: Annotated[list[Path], typer.Option("--from", help="Real BED files or folders (repeatable).")],
    chrom_sizes: Annotated[Optional[Path], typer.Option("--chrom-sizes", help="Genome chrom.sizes (else the index's genome).")] = None,
    index: IndexOpt = DEFAULT_INDEX,
    records: Annotated[int, typer.Option(help="Records to derive.")] = 1000,
    family_size: Annotated[int, typer.Option(help="Records per family (one real file or half-file each).")] = 12,
    max_intervals: Annotated[int, typer.Option(help="Cap on intervals taken from each real file.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    quiet: QuietOpt = False,
) -> None:
    """Derive graded families of records from real BED files by seeded perturbation (then: gidx ingest OUT)."""
    from gidx.corpus import CorpusConfig, make_corpus

    if chrom_sizes is not None:
        from gidx.genome import Genome

        genome = Genome.from_chrom_sizes(chrom_sizes)
    else:
        genome = open_index(index).genome
    cfg = CorpusConfig(records=records, family_size=family_size, max_intervals=max_intervals, seed=seed)
    with Bar("corpus", quiet) as bar:
        man = make_corpus(list(sources), genome, out, cfg, progress=bar)
    if not quiet:
        fams = len({r["family"] for r in man["records"]})
        _err(f"Wrote {len(man['records'])} records in {fams} families from {len(man['sources'])} files to {out} "
             f"({len(man['skipped'])} files skipped); next: gidx ingest {out}")


models_app = typer.Typer(help="Trained M models: list them, choose the active one.", no_args_is_help=True)


@models_app.command("list")
def models_list(index: IndexOpt = DEFAULT_INDEX, fmt: FormatOpt = Format.table, out: OutOpt = None) -> None:
    """Models registered in the catalog, with status, validation recall and which one is active."""
    from gidx.train import list_models

    check_output(fmt, out)
    emit(list_models(open_index(index)), fmt, out)


@models_app.command("activate")
def models_activate(
    model: Annotated[str, typer.Argument(metavar="MODEL",
                                         help="Model id (or 'sketch' for the untrained position sketch).")],
    index: IndexOpt = DEFAULT_INDEX,
    quiet: QuietOpt = False,
) -> None:
    """Make a model whose re-embedding finished the active set encoder."""
    from gidx.train import activate

    with Bar("activate", quiet) as bar:
        msg = activate(open_index(index), model, progress=bar)
    if not quiet:
        _err(msg)


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)
    app.command("eval")(eval_cmd)
    app.command("corpus")(corpus_cmd)
    app.add_typer(models_app, name="models")


def main() -> None:  # standalone / torchrun entry point
    from gidx.errors import GidxError

    app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
    register(app)
    try:
        app()
    except GidxError as e:
        _err(f"Error: {e}")
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
