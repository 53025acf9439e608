"""``gidx demo``: the whole loop on the bundled yeast data, no downloads, no weights."""

from __future__ import annotations

import sys
import tempfile
from importlib import resources
from pathlib import Path

from .output import Bar, Format, emit

QUERY = "winston_annotations/Scer_transcripts_w_verifiedORFs-nonoverlapping.bed.gz"


def bundled() -> Path:
    return Path(str(resources.files("gidx") / "data" / "sacCer3"))


def run_demo(keep: Path | None = None, quiet: bool = False) -> Path:
    from gidx.index import Index

    data = bundled()
    fasta, beds = data / "S_cerevisiae.fasta.gz", data / "bed"
    where = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="gidx-demo-")) / "idx"

    def say(text: str) -> None:
        if not quiet:  # --quiet: the result table on stdout only
            print(text, file=sys.stderr)

    say(f"$ gidx init {where} --genome {fasta} --name sacCer3 --chrom-alias chrM=chrmt")
    say("  (the FASTA calls the mitochondrion 'chrmt', the BED files say 'chrM': mapped explicitly)")
    idx = Index.create(where, fasta=fasta, genome_name="sacCer3", aliases={"chrM": "chrmt"})
    say(f"$ gidx ingest {beds} -i {where}")
    with Bar("ingest", quiet) as bar:
        rep = idx.ingest([beds], progress=bar)
    say(f"  added {len(rep.added)} records, {rep.intervals:,} intervals in {rep.seconds:.2f} s")
    q = beds / QUERY
    say(f"$ gidx query {q} -i {where} -k 10")
    table = idx.query(q, k=10)
    emit(table, Format.table, title=f"records most similar to {q.name}")
    qid = (table.schema.metadata or {}).get(b"gidx.query_id", b"?").decode()
    say(f"$ gidx truth -i {where}")
    with Bar("truth", quiet) as bar:
        truth = idx.truth(progress=bar)
    say(f"  exact seqpare of every pair: {truth.pairs} pairs with S > 0 stored in table `seqpare` "
        f"in {truth.seconds:.2f} s")
    say(f"""
Try next (the index stays in {where}):
  gidx ls -i {where}
  gidx query {beds / 'macs3_hmmratac/hmmratac_yeast500k_accessible_regions.narrowPeak.gz'} -i {where} -k 5 --format tsv
  gidx sql -i {where} "select r.rank, rec.name, r.score, r.exact_score from query_results r join records rec on rec.id = r.record_id where r.query_id = {qid} order by r.rank"
  gidx sql -i {where} "select q.name query, t.name target, s from seqpare join records q on q.id = query_id join records t on t.id = target_id where query_id <> target_id order by s desc limit 5"
  gidx train -i {where}     # learn set embeddings from the seqpare table (more records make it worthwhile: gidx corpus)
  gidx info -i {where}
  duckdb {where / 'catalog.duckdb'}     # the catalog is a plain DuckDB file (close gidx first)""")
    return where
