"""Build tests/data/index-0003 with the code at commit facaff8 (schema 0003).

Not a test: run once, by hand, with the OLD code first on the path (see PROVENANCE.md):

    git worktree add --detach /tmp/gidx-main facaff8
    cd /tmp/old-build && PYTHONPATH=/tmp/gidx-main .venv/bin/python build_index.py out
    tar --exclude=idx/cache -czf index.tar.gz -C out idx
"""
import gzip, json, sys, shutil
from pathlib import Path
import gidx
from gidx.index import Index
from gidx import catalog
assert gidx.__file__.startswith("/tmp/gidx-main/"), gidx.__file__
assert catalog.SCHEMA_HEAD == "0003"
BED = Path("/tmp/gidx-main/gidx/data/sacCer3/bed")
out = Path(sys.argv[1])
shutil.rmtree(out, ignore_errors=True)
out.mkdir(parents=True)
# chrom.sizes of the bundled FASTA
names, lengths, cur = [], [], None
for line in gzip.open("/tmp/gidx-main/gidx/data/sacCer3/S_cerevisiae.fasta.gz", "rt"):
    if line.startswith(">"):
        names.append(line[1:].split()[0]); lengths.append(0)
    else:
        lengths[-1] += len(line.strip())
sizes = out / "sacCer3.chrom.sizes"
sizes.write_text("".join(f"{n}\t{l}\n" for n, l in zip(names, lengths)))
idx = Index.create(out / "idx", chrom_sizes=sizes, genome_name="sacCer3", aliases={"chrM": "chrmt"})
rep = idx.ingest([BED / "winston_netseq_quintiles", BED / "genomepy" / "sacCer3.annotation.bed",
                  BED / "winston_annotations" / "SSA4.bed"])
assert not rep.rejected and len(rep.added) == 8, rep
print("added", rep.added)
queries = {
    "quintile1_rerank": dict(path="winston_netseq_quintiles/Scer_transcripts_w_verifiedORFs-nonoverlapping-plusone-nucdyad-NETseq-quintile-1.bed", k=5),
    "hmmratac_exact": dict(path="macs3_hmmratac/hmmratac_yeast500k_accessible_regions.narrowPeak.gz", k=8, exact=True),
}
expected = {}
for key, q in queries.items():
    kw = {k: v for k, v in q.items() if k != "path"}
    t = idx.query(BED / q["path"], **kw)
    expected[key] = {"query": q, "query_id": int(t.schema.metadata[b"gidx.query_id"]), "rows": t.to_pylist()}
tr = idx.truth()
print("truth", tr)
from gidx.check import check_index
cr = check_index(idx)
assert cr.ok, cr.problems
with idx.catalog.connect() as conn:
    from sqlalchemy import text
    expected["records"] = [list(r) for r in conn.execute(text("select id, name, n_intervals, content_hash from records order by id"))]
    expected["seqpare"] = [list(r) for r in conn.execute(text("select query_id, target_id, n_q, n_t, teo, s from seqpare order by 1, 2"))]
    expected["intervals"] = conn.execute(text("select count(*) from intervals")).scalar()
    expected["revision"] = conn.execute(text("select version_num from alembic_version")).scalar()
    expected["record_id_seq_next"] = None
(out / "expected.json").write_text(json.dumps(expected, indent=1, default=str))
print(json.dumps({k: v for k, v in expected.items() if k != "seqpare"}, default=str)[:3000])
