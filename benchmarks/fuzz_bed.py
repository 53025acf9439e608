"""Fuzz the BED reader (and ingest) with generated good and bad files.

Every generated file is judged by an independent oracle (a few lines of plain
Python written from the BED rules, not from gidx's reader). For each case the
reader must either return exactly the oracle's intervals, or raise an
InputError whose message is one line naming the file (and the line, when the
problem is on a line). Files without intervals (empty, header lines only) are
read as ingest reads them: an empty set, not an error. Anything else — a wrong answer, a traceback, a
multi-line message, a message without the file — is a failure.

    python benchmarks/fuzz_bed.py --cases 10000        # the tally for RESULTS.md
    python benchmarks/fuzz_bed.py --cases 300 --ingest # also ingest: a rejected file changes nothing
"""

from __future__ import annotations

import argparse
import gzip
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

CHROMS = {"chr1": 5000, "chr2": 3000, "chrX": 2000, "chrM": 500}
# things real files contain, good and bad
MUTATIONS = (
    "none", "crlf", "header_track", "header_hash", "colnames", "blank_lines", "extra_columns", "unsorted",
    "duplicates", "zero_length", "spaces_not_tabs", "too_few_columns", "non_integer", "float_coord", "negative",
    "start_gt_end", "past_end", "huge_coord", "unknown_chrom", "alias_1_vs_chr1", "unicode_chrom", "unicode_extra",
    "binary", "nul_byte", "latin1_bytes", "empty", "only_header", "truncated_gzip", "gzip", "mixed_separators",
    "comment_mid_file", "leading_space_coord", "plus_sign", "trailing_tab",
)


def make_case(rng: random.Random) -> tuple[bytes, str]:
    """(file bytes, mutation name)."""
    mut = rng.choice(MUTATIONS)
    n = rng.randint(1, 30)
    rows = []
    for _ in range(n):
        c = rng.choice(list(CHROMS))
        s = rng.randint(0, CHROMS[c] - 1)
        e = rng.randint(s, min(CHROMS[c], s + 400))
        rows.append([c, str(s), str(e)])
    if mut == "unsorted":
        rng.shuffle(rows)
    if mut == "duplicates":
        rows += [list(r) for r in rows[: rng.randint(1, len(rows))]]
    if mut == "zero_length":
        r = rng.choice(rows)
        r[2] = r[1]
    extra = []
    if mut in ("extra_columns", "unicode_extra"):
        extra = ["name", "0", "+", "1.5", "-1", "3"] if mut == "extra_columns" else ["gène_ß_名前"]
    lines = ["\t".join(r + extra) for r in rows]
    i = rng.randrange(len(lines))
    f = lines[i].split("\t")
    if mut == "spaces_not_tabs":
        lines[i] = " ".join(f)
    elif mut == "mixed_separators":
        lines[i] = f[0] + "\t" + f[1] + " " + f[2]
    elif mut == "too_few_columns":
        lines[i] = "\t".join(f[:2])
    elif mut == "non_integer":
        lines[i] = "\t".join([f[0], "abc", f[2]])
    elif mut == "float_coord":
        lines[i] = "\t".join([f[0], f[1] + ".5", f[2]])
    elif mut == "negative":
        lines[i] = "\t".join([f[0], "-" + str(rng.randint(1, 50)), f[2]])
    elif mut == "start_gt_end":
        lines[i] = "\t".join([f[0], str(int(f[2]) + 5), f[2]])
    elif mut == "past_end":
        lines[i] = "\t".join([f[0], f[1], str(CHROMS[f[0]] + rng.randint(1, 100))])
    elif mut == "huge_coord":
        lines[i] = "\t".join([f[0], f[1], "9" * rng.randint(19, 40)])
    elif mut == "unknown_chrom":
        lines[i] = "\t".join(["chrUn_foo"] + f[1:])
    elif mut == "alias_1_vs_chr1":
        lines[i] = "\t".join([f[0].removeprefix("chr")] + f[1:])
    elif mut == "unicode_chrom":
        lines[i] = "\t".join(["chré"] + f[1:])
    elif mut == "comment_mid_file":
        lines.insert(i, "# a comment")
    elif mut == "leading_space_coord":
        lines[i] = "\t".join([f[0], " " + f[1], f[2]])
    elif mut == "plus_sign":
        lines[i] = "\t".join([f[0], "+" + f[1], f[2]])
    elif mut == "trailing_tab":
        lines[i] = lines[i] + "\t"
    elif mut == "header_track":
        lines.insert(0, 'track name="x" description="y"')
        lines.insert(0, "browser position chr1:1-100")
    elif mut == "header_hash":
        lines.insert(0, "#chrom\tstart\tend")
    elif mut == "colnames":
        lines.insert(0, "chrom\tchromStart\tchromEnd")
    elif mut == "blank_lines":
        lines.insert(i, "")
        lines.append("")
    elif mut in ("empty",):
        lines = []
    elif mut == "only_header":
        lines = ["track name=x", "# nothing here"]
    sep = "\r\n" if mut == "crlf" else "\n"
    data = (sep.join(lines) + (sep if lines else "")).encode()
    if mut == "binary":
        data = bytes(rng.randrange(256) for _ in range(rng.randint(10, 300)))
    elif mut == "nul_byte":
        data = data[:5] + b"\x00" + data[5:]
    elif mut == "latin1_bytes":
        data = data.replace(b"chr1", "chr\xe9".encode("latin-1"), 1) if b"chr1" in data else b"chr\xe9\t1\t2\n"
    if mut in ("gzip", "truncated_gzip"):
        data = gzip.compress(data)
        if mut == "truncated_gzip":
            data = data[: max(3, len(data) // 2)]
    return data, mut


def oracle(data: bytes) -> list[tuple[str, int, int]] | None:
    """Expected intervals (an empty list for a file without any), or None when the file must be rejected."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except Exception:
            return None
    if b"\x00" in data:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    out = []
    seen_data = False
    for line in text.split("\n"):
        line = line.rstrip("\r")
        if not line.strip() or line.startswith(("track", "browser", "#")):
            continue
        f = line.split("\t")
        if len(f) < 3:
            return None
        def as_int(x):
            x = x.strip()
            body = x[1:] if x[:1] in "+-" else x
            return int(x) if body.isdigit() else None
        s, e = as_int(f[1]), as_int(f[2])
        if not seen_data and s is None and e is None:
            seen_data = True  # a column-name line at the top (both coordinates non-numeric)
            continue
        seen_data = True
        c = f[0].strip()
        if s is None or e is None or s < 0 or e < 0 or s > e or abs(s) >= 2**62 or abs(e) >= 2**62:
            return None
        if c not in CHROMS or e > CHROMS[c]:
            return None
        out.append((c, s, e))
    return out


def judge(path: Path, data: bytes, genome) -> str:
    """'ok' (accepted and equal to the oracle), 'rejected' (clean one-line error), or a failure description."""
    from gidx.bed import read_bed
    from gidx.errors import InputError

    path.write_bytes(data)
    want = oracle(data)
    try:
        got = read_bed(path, genome, allow_empty=True).intervals  # as ingest reads (gidx seqpare too)
    except InputError as e:
        msg = str(e)
        if "\n" in msg:
            return "FAIL multi-line error"
        if not msg.startswith(str(path)):
            return f"FAIL error does not name the file: {msg[:80]}"
        if want is not None:
            return f"FAIL rejected a valid file: {msg[:100]}"
        return "rejected"
    except Exception as e:  # a traceback for the user: always a failure
        return f"FAIL {type(e).__name__}: {e}"
    rows = [(got.chroms[c], int(s), int(e)) for c, s, e in zip(got.chrom, got.start, got.end)]
    if want is None:
        return "FAIL accepted a bad file"
    if rows != want:
        return "FAIL wrong intervals"
    return "ok"


def chrom_sizes_genome(folder: Path):
    from gidx.genome import Genome

    p = folder / "fuzz.chrom.sizes"
    p.write_text("".join(f"{c}\t{n}\n" for c, n in CHROMS.items()))
    return Genome.from_chrom_sizes(p, "fuzz"), p


def run(cases: int, seed: int = 0, ingest: bool = False) -> tuple[Counter, list[str]]:
    rng = random.Random(seed)
    tally: Counter = Counter()
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        genome, sizes = chrom_sizes_genome(tmp)
        idx = None
        if ingest:
            from gidx.index import Index

            idx = Index.create(tmp / "idx", chrom_sizes=sizes, genome_name="fuzz")
        for i in range(cases):
            data, mut = make_case(rng)
            path = tmp / f"case{i}.bed"
            verdict = judge(path, data, genome)
            tally[(mut, verdict if not verdict.startswith("FAIL") else "FAIL")] += 1
            if verdict.startswith("FAIL"):
                failures.append(f"case {i} ({mut}): {verdict}")
            if idx is not None:
                before = idx.sql("select count(*) n, coalesce(sum(n_intervals), 0) iv from records").to_pylist()
                rep = idx.ingest([path])
                after = idx.sql("select count(*) n, coalesce(sum(n_intervals), 0) iv from records").to_pylist()
                if verdict == "rejected" and (after != before or not rep.rejected):
                    failures.append(f"case {i} ({mut}): rejected file changed the catalog")
                path.unlink()
    return tally, failures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ingest", action="store_true", help="also ingest every case into an index")
    args = ap.parse_args()
    tally, failures = run(args.cases, args.seed, args.ingest)
    by_verdict = Counter()
    for (_, v), n in tally.items():
        by_verdict[v] += n
    print(f"cases: {args.cases}  accepted (equal to oracle): {by_verdict['ok']}  "
          f"rejected with a one-line FILE:LINE error: {by_verdict['rejected']}  failures: {by_verdict['FAIL']}")
    print("| mutation | accepted | rejected | failed |")
    print("|---|---:|---:|---:|")
    for mut in MUTATIONS:
        print(f"| {mut} | {tally[(mut, 'ok')]} | {tally[(mut, 'rejected')]} | {tally[(mut, 'FAIL')]} |")
    for f in failures[:30]:
        print(f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
