"""Kill gidx with SIGKILL at random moments and prove the index survives.

For each command (ingest, truth, train) and each trial: start the command as
its own process, SIGKILL it after a random delay, then check that

  1. the index opens (schema revision, catalog readable),
  2. `gidx check` finds no problem (orphans of the interrupted work are allowed:
     nothing reads them),
  3. rerunning the same command completes (exit 0),
  4. the final state equals that of an uninterrupted run: same records (names and
     content hashes), same interval counts, one vector and one overlap entry per
     record, same seqpare ground truth.

    python benchmarks/crash_consistency.py                  # 20 trials each of ingest and truth (train too if available)
    python benchmarks/crash_consistency.py --trials 5 --commands ingest
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
YEAST = ROOT / "gidx" / "data" / "sacCer3"


def gidx(*args, check=True, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gidx.cli.main", *map(str, args)], capture_output=True, text=True,
                          check=check, timeout=timeout)


def fresh_index(path: Path) -> Path:
    gidx("init", path, "--genome", YEAST / "S_cerevisiae.fasta.gz", "--name", "sacCer3", "--chrom-alias",
         "chrM=chrmt", "-q")
    return path


def state(path: Path) -> dict:
    """What must be identical after (killed + rerun) and after one clean run."""
    import duckdb

    from gidx.index import Index

    idx = Index.open(path)
    with duckdb.connect(str(path / "catalog.duckdb"), read_only=True) as c:
        records = c.execute("select name, content_hash, n_intervals from records order by name").fetchall()
        counts = c.execute("select r.name, count(*) from intervals i join records r on r.id = i.record_id "
                           "group by r.name order by r.name").fetchall()
        truth = c.execute("select q.name, t.name, round(s, 9) from seqpare join records q on q.id = query_id "
                          "join records t on t.id = target_id order by 1, 2").fetchall()
    eid, enc = idx.set_encoder()
    live = idx.record_ids()
    vec_ids = [int(i) for i in idx.vectors.record_ids(idx.vector_table(eid, enc)) if int(i) in live]
    ov = idx.overlap(live)
    return {"records": records, "interval_counts": counts, "truth": truth,
            "vectors_per_record": sorted(set(vec_ids)) == sorted(live) and len(vec_ids) == len(live),
            "overlap_records": sorted(int(i) for i in ov.record_ids) == sorted(live)}


COMMANDS = {
    "ingest": lambda idx: ["ingest", YEAST / "bed", "-i", idx, "-q"],
    "truth": lambda idx: ["truth", "-i", idx, "-q"],
    "train": lambda idx: ["train", "-i", idx, "-q", "--epochs", "2"],
}


def prepare(command: str, path: Path) -> None:
    fresh_index(path)
    if command in ("truth", "train"):
        gidx(*COMMANDS["ingest"](path))
    if command == "train":
        gidx(*COMMANDS["truth"](path))


def run_trials(command: str, trials: int, seed: int = 0, max_delay: float | None = None, log=print) -> dict:
    """SIGKILL ``command`` ``trials`` times at random moments; returns a tally."""
    from gidx.check import check_index
    from gidx.index import Index

    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix=f"gidx-crash-{command}-"))
    tally = {"command": command, "trials": 0, "killed_midway": 0, "finished_before_kill": 0, "survived": 0,
             "failures": []}
    try:
        base = work / "base"
        prepare(command, base)
        clean = work / "clean"
        shutil.copytree(base, clean)
        t = time.perf_counter()
        gidx(*COMMANDS[command](clean))
        full = time.perf_counter() - t
        want = state(clean)
        for trial in range(trials):
            idx = work / f"t{trial}"
            shutil.copytree(base, idx)
            delay = rng.uniform(0.05, max_delay or full * 1.1)
            proc = subprocess.Popen([sys.executable, "-m", "gidx.cli.main", *map(str, COMMANDS[command](idx))],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            time.sleep(delay)
            finished = proc.poll() is not None
            if not finished:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            tally["trials"] += 1
            tally["finished_before_kill" if finished else "killed_midway"] += 1
            try:
                rep = check_index(Index.open(idx))
                if not rep.ok:
                    raise AssertionError(f"check after kill: {rep.problems}")
                rerun = gidx(*COMMANDS[command](idx), check=False)
                if rerun.returncode != 0:
                    raise AssertionError(f"rerun exit {rerun.returncode}: {rerun.stderr.strip()[-300:]}")
                got = state(idx)
                if got != want:
                    diff = [k for k in want if got[k] != want[k]]
                    raise AssertionError(f"state after rerun differs from a clean run in {diff}")
                tally["survived"] += 1
            except Exception as e:  # record and go on: the tally is the result
                tally["failures"].append(f"trial {trial} (kill at {delay:.2f}s): {e}")
                log(f"  FAIL {command} trial {trial}: {e}")
            shutil.rmtree(idx, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tally


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--commands", nargs="+", default=["ingest", "truth", "train"], choices=list(COMMANDS))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print("| command | trials | killed midway | finished before the kill | survived (check ok, rerun ok, same state) |")
    print("|---|---:|---:|---:|---:|")
    failures = []
    for command in args.commands:
        if command == "train" and gidx("train", "--help", check=False).returncode != 0:
            print(f"| {command} | not available in this build | | | |")
            continue
        t = run_trials(command, args.trials, args.seed)
        failures += t["failures"]
        print(f"| {command} | {t['trials']} | {t['killed_midway']} | {t['finished_before_kill']} | {t['survived']} |",
              flush=True)
    for f in failures:
        print("FAILURE:", f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
