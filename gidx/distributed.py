"""Ray for what one machine cannot do: ingest (parse + embed) and truth shards on Ray workers.

Imported only when ``--ray`` (``ray=``) is given: nothing else in gidx imports Ray.

What runs where:

* **workers** read BED files and the index's overlap segments from *shared
  storage* (the same paths on every node) and return plain data: parsed
  intervals, set vectors, seqpare rows. They never open the catalog or the
  vector table.
* **the driver** (the process that runs ``gidx ingest`` / ``gidx truth``) is the
  one committer: it feeds the workers' results, in input order, into the same
  commit batches as a single-process run, so the write order of
  :mod:`gidx.index` (ids reserved -> vectors and segments -> one catalog
  transaction) and every crash guarantee that follows from it hold unchanged,
  and the index is identical to a single-process run's.

The driver keeps a bounded number of tasks in flight (twice the cluster's CPUs) and
fetches their results one at a time, in order: its memory holds one task's result
whatever the number of files or records (finished ones wait in Ray's object store).

``address``: ``"auto"`` calls ``ray.init()`` (the cluster in ``RAY_ADDRESS``, else a
local one); anything else is passed as ``ray.init(address=...)`` (``HEAD:6379``,
``ray://HEAD:10001``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from collections import deque
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np

from .errors import GidxError, InputError

if TYPE_CHECKING:
    from .genome import Genome

CRASH_ONCE_ENV = "GIDX_RAY_CRASH_ONCE"  # test hook: a marker file; the first task to create it kills its worker
TASK_RETRIES = 3  # a task whose worker died is run again (on another worker if need be)

#: per-task timings of the last ingest / truth run in this process (benchmarks read them)
LAST_TIMINGS: list[dict] = []


def connect(address: str):
    """The ``ray`` module, connected to the cluster named by ``address`` (see the module docstring)."""
    try:
        import ray
    except ImportError:
        raise GidxError("--ray needs Ray: pip install 'gidx[ray]'") from None
    if not ray.is_initialized():
        import logging
        import warnings

        try:
            with warnings.catch_warnings():  # Ray forks+execs its processes: harmless for LanceDB's runtime
                warnings.filterwarnings("ignore", message="lancedb fork support", category=RuntimeWarning)
                _init(ray, address, logging.WARNING)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise GidxError(f"--ray {address}: cannot connect to a Ray cluster: {str(e).splitlines()[0]}") from None
    return ray


def _init(ray, address: str, level: int) -> None:
    if address == "auto":
        if os.environ.get("RAY_ADDRESS"):
            ray.init(logging_level=level)
        else:
            ray.init(include_dashboard=False, logging_level=level)
    else:
        _reachable(address)
        ray.init(address=address, logging_level=level)


def _reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse at once an address nothing listens on (Ray itself would retry for minutes)."""
    import socket
    from urllib.parse import urlsplit

    hostport = urlsplit(address if "://" in address else f"ray-gcs://{address}")
    try:
        host, port = hostport.hostname, hostport.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise GidxError(f"--ray {address}: give 'auto' or the head node's HOST:PORT (e.g. head:6379)")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise GidxError(f"--ray {address}: no Ray head answers there ({e.strerror or e}); start one with "
                        f"`ray start --head --port {port}`") from None


def _cpus(ray) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _maybe_crash(marker: str | None) -> None:
    """Test hook: the first task that creates ``marker`` dies like a killed worker."""
    if not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    os._exit(1)


def _remote(ray, fn):
    return ray.remote(num_cpus=1, max_retries=TASK_RETRIES, retry_exceptions=False)(fn)


def _ordered(ray, remote, args: Iterable[tuple], in_flight: int) -> Iterator:
    """Results of ``remote.remote(*a)`` for each ``a`` of ``args``, in order.

    At most ``in_flight`` tasks are submitted and not yet consumed; finished ones wait in
    Ray's object store (on the workers' nodes, spilled to disk if need be), and the driver
    fetches one result at a time, the next in order: its memory holds one task's result
    whatever the number of files or records. ``args`` is read lazily, one task ahead of
    submission."""
    queue: deque = deque()

    def get(ref):
        try:
            return ray.get(ref)
        except GidxError:
            raise
        except ray.exceptions.RayError as e:  # workers lost beyond the retries, ...
            raise GidxError(f"a Ray task failed (nothing of its batch was committed; rerun to finish): "
                            f"{str(e).strip().splitlines()[0]}") from None

    try:
        for a in args:
            while len(queue) >= in_flight:
                yield get(queue.popleft())
            queue.append(remote.remote(*a))
        while queue:
            yield get(queue.popleft())
    finally:
        for ref in queue:  # the caller stopped early (an error, a kill): drop the rest
            try:
                ray.cancel(ref, force=True)
            except Exception:
                pass


# ---- ingest ------------------------------------------------------------------------


@dataclass(frozen=True)
class ParseSpec:
    """What a worker needs to parse and embed a file like the driver would (small, picklable)."""

    genome: "Genome"  # names and lengths (no FASTA, no cache folder)
    aliases: dict
    skip_unknown_chroms: bool
    encoder: object | None  # a numpy-only set encoder (the position sketch), or None: the driver embeds
    crash_marker: str | None = None


def parse_spec(genome: "Genome", aliases: dict, skip_unknown_chroms: bool, encoder,
               crash_marker: str | None = None) -> ParseSpec:
    """The ParseSpec of an ingest: the genome without its cache folder, and the encoder
    only when it is the numpy-only position sketch (a trained model stays with the driver)."""
    from .sketch import PositionSketch

    return ParseSpec(genome=dataclasses.replace(genome, cache_dir=None), aliases=dict(aliases),
                     skip_unknown_chroms=skip_unknown_chroms,
                     encoder=encoder if isinstance(encoder, PositionSketch) else None,
                     crash_marker=crash_marker)


def files_for_workers(files: list[tuple[Path, str]], per_task: int) -> list[list[tuple[str, str]]]:
    """``(absolute path, path as given)`` of ``files``, in tasks of ``per_task``."""
    items = [(os.path.abspath(f), str(f)) for f, _ in files]
    return [items[i : i + per_task] for i in range(0, len(items), per_task)]


def unpack_parsed(results: list) -> Iterator[tuple[object, np.ndarray | None]]:
    """A worker's ``_parse_embed`` results as ``(BedFile or InputError, vector or None)``."""
    for got, vec in results:
        if isinstance(got, tuple):
            _, problems, total, hint = got
            yield InputError(problems, total, hint), None
        else:
            yield got, vec


def _parse_embed(files: list[tuple[str, str]], spec: ParseSpec) -> tuple[list, dict]:
    """Worker: parse (and embed) ``(absolute path, path as the user gave it)`` files.
    Returns one ``(BedFile, vector or None)`` or ``(("error", problems, total, hint), None)``
    per file, with paths in messages as the user gave them, plus timings."""
    from .bed import read_bed

    _maybe_crash(spec.crash_marker)
    t0 = time.perf_counter()
    parse_s = embed_s = 0.0
    out = []
    for full, given in files:
        t = time.perf_counter()
        try:
            bf = read_bed(Path(full), spec.genome, aliases=spec.aliases, skip_unknown_chroms=spec.skip_unknown_chroms,
                          allow_empty=True)
        except InputError as e:
            out.append((("error", [p.replace(full, given) for p in e.problems], e.total, e.hint), None))
            parse_s += time.perf_counter() - t
            continue
        bf = dataclasses.replace(bf, path=Path(given), stats=bf.record_stats(spec.genome.names, full))
        t1 = time.perf_counter()
        parse_s += t1 - t
        vec = None
        if spec.encoder is not None:
            vec = spec.encoder.embed([bf.intervals], spec.genome.lengths)[0]
        embed_s += time.perf_counter() - t1
        out.append((bf, vec))
    return out, {"kind": "ingest", "files": len(files), "parse_s": parse_s, "embed_s": embed_s,
                 "task_s": time.perf_counter() - t0, "node": _node(), "pid": os.getpid()}


def _node() -> str:
    import socket

    return socket.gethostname()


def ingest_results(address: str, files: list[tuple[Path, str]], genome: "Genome", aliases: dict,
                   skip_unknown_chroms: bool, encoder, *, files_per_task: int | None = None,
                   in_flight: int | None = None) -> Iterator[tuple[object, np.ndarray | None]]:
    """``(BedFile or InputError, vector or None)`` per file of ``files``, in order, parsed
    (and embedded, for a position sketch) on Ray workers. A vector of None: the driver
    embeds (a trained model's encoder stays on the driver, which loaded it)."""
    ray = connect(address)
    LAST_TIMINGS.clear()
    if not files:
        return
    cpus = _cpus(ray)
    spec_ref = ray.put(parse_spec(genome, aliases, skip_unknown_chroms, encoder,
                                  crash_marker=os.environ.get(CRASH_ONCE_ENV) or None))
    chunks = files_for_workers(files, files_per_task or max(1, min(32, math.ceil(len(files) / (4 * cpus)))))
    remote = _remote(ray, _parse_embed)
    for results, timing in _ordered(ray, remote, [(c, spec_ref) for c in chunks], in_flight or 2 * cpus):
        LAST_TIMINGS.append(timing)
        yield from unpack_parsed(results)


# ---- truth -------------------------------------------------------------------------

_OPEN: dict = {}  # worker process: (segments folder, segment names, live ids digest) -> OverlapIndex


def _overlap(seg_dir: str, live: np.ndarray):
    import hashlib

    from .seqpare import SEGMENT_PREFIX, OverlapIndex

    names = tuple(sorted(n for n in os.listdir(seg_dir) if n.startswith(SEGMENT_PREFIX)))
    key = (seg_dir, names, hashlib.sha1(np.ascontiguousarray(live).tobytes()).hexdigest())
    if key not in _OPEN:
        _OPEN.clear()
        # one thread: a task holds one CPU, Ray runs one task per CPU (results do not depend on it)
        _OPEN[key] = OverlapIndex.open(seg_dir, live, threads=1)
    return _OPEN[key]


def _truth_shard(seg_dir: str, live: np.ndarray, tasks: list, top_k: int, bounds, cap: int,
                 crash_marker: str | None) -> tuple[list, dict]:
    """Worker: the seqpare searches of a shard's query records (:class:`gidx.truth.QueryTask`:
    intervals, covered_upto, vector candidates found by the driver, stored rows) against
    the overlap segments of the shared index folder (read-only)."""
    from .truth import run_task

    _maybe_crash(crash_marker)
    t0 = time.perf_counter()
    ov = _overlap(seg_dir, live)
    t1 = time.perf_counter()
    out = [run_task(ov, task, live, top_k, bounds, cap) for task in tasks]
    return out, {"kind": "truth", "queries": len(tasks), "open_s": t1 - t0, "search_s": time.perf_counter() - t1,
                 "task_s": time.perf_counter() - t0, "node": _node(), "pid": os.getpid()}


def truth_results(address: str, index_path: Path, live: np.ndarray, shards: Iterable[list], top_k: int, *,
                  bounds=None, cap: int = 0, in_flight: int | None = None) -> Iterator[list]:
    """Per shard (in order): ``[(query record id, SearchResult, certified, searched)]``
    (:func:`gidx.truth.run_task`), computed on Ray workers. ``shards``: lists of
    :class:`gidx.truth.QueryTask`, consumed lazily (the driver reads each chunk's
    intervals from the catalog and finds its vector candidates only when it is
    submitted). ``bounds``: the :class:`gidx.truth.RecordBounds` of the run (put in the
    object store once)."""
    ray = connect(address)
    LAST_TIMINGS.clear()
    remote = _remote(ray, _truth_shard)
    live_ref = ray.put(np.asarray(live, dtype=np.int64))
    bounds_ref = ray.put(bounds)
    seg_dir = os.path.abspath(Path(index_path) / "segments")
    marker = os.environ.get(CRASH_ONCE_ENV) or None

    args = ((seg_dir, live_ref, shard, top_k, bounds_ref, cap, marker) for shard in shards)
    for results, timing in _ordered(ray, remote, args, in_flight or 2 * _cpus(ray)):
        LAST_TIMINGS.append(timing)
        yield results


def truth_shard_size(address: str, n: int) -> int:
    """Query records per truth task: small enough to spread ``n`` over the cluster, at most 64."""
    ray = connect(address)
    return max(1, min(64, math.ceil(n / (4 * _cpus(ray)))))
