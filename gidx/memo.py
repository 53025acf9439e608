"""The tile memo: embeddings of genome tiles, computed once, stored in Zarr, reused.

Content address
    A tile's embedding depends only on the genome (its digest), the tiling
    (``Tiling.params()``), the encoder (``identity()``, incl. a weights hash) and the
    stored dtype. ``address = sha256(json of those four)``; the memo lives in the Zarr
    group ``<root>/<address>/`` whose attributes record the inputs. Any change of an
    input gives another address, so a stale embedding is never served.

Layout
    One array per (chromosome code, layer, offset) grid, created on first write:
    ``emb.c<code>.l<layer>.o<offset>`` of shape ``(n_tiles, dim)`` (fill NaN) and
    ``filled.c<code>.l<layer>.o<offset>`` of shape ``(n_tiles,)`` bool (fill False), both
    chunked along tiles with the *same* chunk length, the whole ``dim`` in one chunk.
    The chunk length of layer K is ``chunk_bp // size_K`` tiles (default 128 kbp:
    1024 tiles of 128 bp = 1 MiB at dim 256 float32, 128 tiles of 1 kbp), capped at
    the grid's tile count, so every chunk holds the same amount of sequence and costs
    about the same to compute and to decode, whatever its layer. (128 kbp rather than
    more: on a cold memo each touched chunk is computed whole, see below, and sparse
    lookups on a large genome touch many chunks; the warm read cost per chunk is
    dominated by decoding, so smaller chunks cost little when reads are dense.)

Chunk-aligned writes (why whole chunks)
    Zarr rewrites a chunk as a whole; a write of part of a chunk is read-modify-write
    and the last writer wins (STACK.md §5), so two processes filling different tiles
    of one chunk could lose each other's tiles while both set their ``filled`` bits:
    a mask without data. The memo therefore only ever writes **whole chunks**: a
    missing tile makes its whole chunk be computed (all its tiles, not only the
    missing ones) and written in one piece. Every chunk write is then complete and
    deterministic, so concurrent writers of the same chunk (two ``gidx`` processes,
    or ranks of a genome-wide fill) write identical bytes and lose nothing; no lock
    is needed. The cost is computing up to one chunk of extra tiles per touched
    chunk on a cold memo (cheap for kmer; for a model, warm the memo with ``fill``).
    Consequently a chunk is either fully filled or not at all.

Write order (crash safety)
    The data chunk is written first, the ``filled`` chunk after it. A crash between the
    two leaves data without its mask: the chunk counts as missing and is recomputed.
    A mask is never set before its data. Zarr's local store writes each chunk to a
    temporary file and renames it into place, so a chunk is never seen half-written.

Reads
    ``get(keys)`` reads whole chunks (the unit of Zarr I/O anyway) and keeps them in an
    in-process LRU cache of ``cache_bytes`` (one array per layer, so a lookup is a few
    numpy gathers); memo content never changes once written, so the cache needs no
    invalidation except after ``verify(repair=True)``. Returned embeddings are float32
    whatever the stored dtype.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import GidxError
from .genome import Genome
from .pipeline import Pipeline
from .tiling import TileKeys, Tiling

MEMO_FORMAT = 1
DTYPES = ("float32", "float16")
DEFAULT_CHUNK_BP = 1 << 17  # 128 kbp of sequence per chunk, whatever the layer
DEFAULT_CACHE_BYTES = 1 << 30

Grid = tuple[int, int, int]  # (chromosome code, layer, offset)
ChunkRef = tuple[Grid, int]  # (grid, chunk number along tiles)


def memo_inputs(genome: Genome, tiling: Tiling, encoder, dtype: str) -> dict:
    return {"genome": genome.digest, "tiling": tiling.params(), "encoder": encoder.identity(), "dtype": dtype}


def memo_address(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def open_index_memo(index_path: str | Path, genome: Genome, tiling: Tiling, encoder, dtype: str = "float32",
                    **options) -> "TileMemo":
    """The memo of an index folder (``<index>/tiles.zarr``) for explicit genome, tiling and
    encoder (where these come from -- CLI options now, the catalog later -- is the caller's)."""
    return TileMemo(Path(index_path) / "tiles.zarr", genome, tiling, encoder, dtype, **options)


@dataclass
class MemoStats:
    """Counters since the memo was opened (or ``reset``). A tile is *read* when served
    from a stored chunk (disk or cache) and *computed* when its chunk had to be embedded;
    ``tiles_computed`` counts every tile of the computed chunks."""

    tiles_requested: int = 0
    tiles_read: int = 0
    tiles_computed: int = 0
    chunks_read: int = 0  # from disk
    chunks_cached: int = 0  # from the in-process cache
    chunks_computed: int = 0

    def reset(self) -> None:
        for name in asdict(self):
            setattr(self, name, 0)


@dataclass
class FillReport:
    chunks: int  # chunks of the requested grids
    skipped: int  # already filled before the run
    computed: int
    tiles_computed: int
    seconds: float


class _Layout:
    """Tiles and chunks of every grid; a small picklable object (workers need it).

    Chunk length of a grid = ``chunk_bp // tile size`` tiles, capped at the grid's tile
    count (Zarr pads an edge chunk to full size when decoding; small chromosomes would
    otherwise decode mostly padding).
    """

    def __init__(self, tiling: Tiling, chrom_lengths: list[int], chunk_bp: int):
        self.tiling, self.chrom_lengths, self.chunk_bp = tiling, chrom_lengths, chunk_bp
        self._sizes: dict[Grid, tuple[int, int]] = {}  # grid -> (n_tiles, chunk_len); lookups are hot

    def _grid_sizes(self, grid: Grid) -> tuple[int, int]:
        if grid not in self._sizes:
            chrom, layer, offset = grid
            n = self.tiling.n_tiles(self.chrom_lengths[chrom], layer, offset)
            self._sizes[grid] = n, max(1, min(self.chunk_bp // self.tiling.sizes[layer], n))
        return self._sizes[grid]

    def n_tiles(self, grid: Grid) -> int:
        return self._grid_sizes(grid)[0]

    def chunk_len(self, grid: Grid) -> int:
        return self._grid_sizes(grid)[1]

    def n_chunks(self, grid: Grid) -> int:
        return -(-self.n_tiles(grid) // self.chunk_len(grid))

    def tile_range(self, ref: ChunkRef) -> tuple[int, int]:
        grid, chunk = ref
        n, length = self._grid_sizes(grid)
        return chunk * length, min((chunk + 1) * length, n)


class GenomeReader:
    """Base of pipeline preprocess stages that read sequence from ``self.genome``.

    Picklable (the genome travels as its JSON description, not its open FASTA), and
    ``reopen()`` -- the pipeline's ``worker_init`` -- gives a worker its own FASTA handle:
    a forked worker must not share the parent's file offset.
    """

    genome: Genome

    def reopen(self) -> None:
        self.genome = Genome.from_json(self.genome.to_json(), cache_dir=self.genome.cache_dir)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["genome"] = (self.genome.to_json(), self.genome.cache_dir)
        return state

    def __setstate__(self, state):
        text, cache_dir = state["genome"]
        self.__dict__.update(state, genome=Genome.from_json(text, cache_dir=cache_dir))


class _TileSequences(GenomeReader):
    """preprocess stage: a chunk reference -> the sequences of its tiles. Fetches the
    chunk's whole span once and slices it (a grid's tiles are adjacent)."""

    def __init__(self, genome: Genome, layout: _Layout):
        self.genome, self.layout = genome, layout

    def __call__(self, ref: ChunkRef) -> list[str]:
        (chrom, layer, offset), _ = ref
        t0, t1 = self.layout.tile_range(ref)
        starts, ends = self.layout.tiling.tile_bounds(layer, offset, np.arange(t0, t1))
        span = self.genome.fetch(np.array([chrom]), starts[:1], ends[-1:])[0]
        size = int(ends[0] - starts[0])
        return [span[a : a + size] for a in (starts - starts[0]).tolist()]


class _ChunkCache:
    """Chunks held in memory, in one preallocated array ("slab") per layer with a slot of
    ``chunk_bp // tile size`` rows per chunk, so that a lookup of many tiles is one
    fancy-index gather per layer instead of one copy per chunk (the per-chunk Python
    work dominated warm lookups). Eviction: least recently used slot, never one touched
    since ``pin_from`` (the chunks of the lookup in progress). Memo content never
    changes once written, so nothing needs invalidating except after a repair.
    """

    def __init__(self, slot_rows: list[int], dim: int, dtype: str, budget_bytes: int):
        row_bytes = dim * np.dtype(dtype).itemsize
        self.slot_rows = slot_rows
        self.n_slots = max(1, budget_bytes // (sum(slot_rows) * row_bytes))
        # np.empty maps pages lazily: memory is used as slots fill, up to the budget
        self.slabs = [np.empty((self.n_slots * rows, dim), dtype=dtype) for rows in slot_rows]
        self.clear()

    def clear(self) -> None:
        self.slot_of: dict[ChunkRef, int] = {}
        self.owner: list[list[ChunkRef | None]] = [[None] * self.n_slots for _ in self.slot_rows]
        self.stamp = [np.full(self.n_slots, -1, dtype=np.int64) for _ in self.slot_rows]
        self.clock = 0

    def touch(self, ref: ChunkRef) -> int | None:
        slot = self.slot_of.get(ref)
        if slot is not None:
            self.clock += 1
            self.stamp[ref[0][1]][slot] = self.clock
        return slot

    def insert(self, ref: ChunkRef, block: np.ndarray, pin_from: int) -> int:
        layer = ref[0][1]
        slot = int(np.argmin(self.stamp[layer]))
        if self.stamp[layer][slot] > pin_from:
            raise RuntimeError("chunk cache too small for one lookup group")  # guarded by get()'s grouping
        old = self.owner[layer][slot]
        if old is not None:
            del self.slot_of[old]
        rows = self.slot_rows[layer]
        self.slabs[layer][slot * rows : slot * rows + len(block)] = block
        self.owner[layer][slot], self.slot_of[ref] = ref, slot
        self.clock += 1
        self.stamp[layer][slot] = self.clock
        return slot


class TileMemo:
    def __init__(self, root: str | Path, genome: Genome, tiling: Tiling, encoder, dtype: str = "float32", *,
                 chunk_bp: int = DEFAULT_CHUNK_BP, cache_bytes: int = DEFAULT_CACHE_BYTES,
                 workers: int = 0, batch_size: int | None = None):
        if dtype not in DTYPES:
            raise GidxError(f"tile memo dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        try:
            tiling.require_max_size(encoder.max_len)
        except ValueError as e:
            raise GidxError(f"tiling {tiling.params()} does not fit encoder {encoder.name}: {e}") from None
        self.root, self.genome, self.tiling, self.encoder, self.dtype = Path(root), genome, tiling, encoder, dtype
        self.inputs = memo_inputs(genome, tiling, encoder, dtype)
        self.address = memo_address(self.inputs)
        self.path = self.root / self.address
        self.dim = int(encoder.dim)
        self.workers = workers
        self.batch_size = batch_size or int(getattr(encoder, "batch_size", 1024))
        self.stats = MemoStats()
        self._group = None
        self._listed: dict | None = None  # name -> zarr array, once listed
        self._arrays: dict[Grid, tuple] = {}
        self.chunk_bp = self._stored_chunk_bp() or int(chunk_bp)
        if self.chunk_bp < 1:
            raise GidxError(f"chunk_bp must be positive, got {chunk_bp}")
        self.layout = _Layout(tiling, [int(x) for x in genome.lengths_list], self.chunk_bp)
        self._sequences = _TileSequences(genome, self.layout)
        self._cache = _ChunkCache([max(1, self.chunk_bp // size) for size in tiling.sizes], self.dim, dtype,
                                  cache_bytes)

    # ---- store ------------------------------------------------------------

    def _stored_chunk_bp(self) -> int | None:
        """An existing memo keeps the chunk layout it was created with."""
        meta = self.path / "zarr.json"
        if not meta.is_file():
            return None
        return int(json.loads(meta.read_text()).get("attributes", {}).get("chunk_bp", 0)) or None

    def _open_group(self, create: bool):
        if self._group is None:
            if not (self.path / "zarr.json").is_file() and not create:
                return None
            # the parent is a group too, so zarr.open_group(root) lists the memos; the
            # attributes are written with the group's metadata, in one atomic file
            _open_or_create_group(self.root)
            self._group = _open_or_create_group(self.path, {
                "gidx_tile_memo": MEMO_FORMAT, "inputs": self.inputs, "chunk_bp": self.chunk_bp,
                "genome_name": self.genome.name, "chroms": list(self.genome.names),
                "chrom_lengths": [int(x) for x in self.genome.lengths_list]})
        return self._group

    @staticmethod
    def _names(grid: Grid) -> tuple[str, str]:
        chrom, layer, offset = grid
        suffix = f"c{chrom}.l{layer}.o{offset}"
        return f"emb.{suffix}", f"filled.{suffix}"

    def _grid_arrays(self, grid: Grid, create: bool):
        """(emb, filled) of a grid, or None if it has none yet and ``create`` is False.

        The group's arrays are listed once (one call that opens them all concurrently,
        instead of two calls per grid); arrays another process creates afterwards are
        seen after ``refresh()`` or when this process creates them itself.
        """
        if grid in self._arrays:
            return self._arrays[grid]
        group = self._open_group(create)
        if group is None:
            return None
        if self._listed is None:
            self._listed = dict(group.arrays())
        emb_name, filled_name = self._names(grid)
        if emb_name in self._listed and filled_name in self._listed:
            arrays = self._listed[emb_name], self._listed[filled_name]
        elif not create:
            return None
        else:
            arrays = self._create_arrays(group, grid)
        self._arrays[grid] = arrays
        return arrays

    def _create_arrays(self, group, grid: Grid):
        import zarr

        emb_name, filled_name = self._names(grid)
        chrom, layer, offset = grid
        n, length = self.layout.n_tiles(grid), self.layout.chunk_len(grid)
        first_start = int(self.tiling.tile_bounds(layer, offset, 0)[0])
        attrs = {"chrom": self.genome.names[chrom], "layer": layer, "offset": offset,
                 "tile_size": self.tiling.sizes[layer], "first_start": first_start}
        # filled first, then emb: whoever finds emb also finds its mask. A concurrent creator
        # (ContainsArrayError) made the same array from the same inputs: open that one.
        try:
            filled = group.create_array(filled_name, shape=(n,), chunks=(length,), dtype="bool", fill_value=False,
                                        attributes=attrs)
        except zarr.errors.ContainsArrayError:
            filled = group[filled_name]
        try:
            emb = group.create_array(emb_name, shape=(n, self.dim), chunks=(length, self.dim), dtype=self.dtype,
                                     fill_value=np.nan, attributes=attrs)
        except zarr.errors.ContainsArrayError:
            emb = group[emb_name]
        return emb, filled

    def refresh(self) -> None:
        """Forget listed arrays and cached chunks (to see what other processes wrote)."""
        self._group, self._listed = None, None
        self._arrays.clear()
        self._cache.clear()

    def _load_chunks(self, grid: Grid, chunks: list[int]) -> list[np.ndarray | None]:
        """Blocks of the chunks from disk; None where not (completely) filled."""
        arrays = self._grid_arrays(grid, create=False)
        if arrays is None:
            return [None] * len(chunks)
        emb, filled = arrays
        try:
            blocks = self._read_stored(emb, filled, grid, chunks)
        except Exception:
            # some chunk cannot be decoded: read them one by one; the memo holds nothing
            # that cannot be recomputed, so an unreadable chunk is recomputed and rewritten
            blocks = []
            for c in chunks:
                try:
                    blocks += self._read_stored(emb, filled, grid, [c])
                except Exception as e:
                    warnings.warn(f"tile memo {self._label((grid, c))} unreadable "
                                  f"({type(e).__name__}: {e}); recomputing it", stacklevel=3)
                    blocks.append(None)
        self.stats.chunks_read += sum(b is not None for b in blocks)
        return blocks

    def _read_stored(self, emb, filled, grid: Grid, chunks: list[int]) -> list[np.ndarray | None]:
        """Blocks of fully filled chunks from disk, None for the others. Adjacent chunks
        are read with one slice (zarr fetches a slice's chunks concurrently; orthogonal
        integer selections are ~3x slower)."""
        out: list[np.ndarray | None] = [None] * len(chunks)
        for run in _adjacent_runs(chunks):
            ranges = [self.layout.tile_range((grid, chunks[i])) for i in run]
            t0, t1 = ranges[0][0], ranges[-1][1]
            mask = filled[t0:t1]
            complete = [(i, a, b) for i, (a, b) in zip(run, ranges) if mask[a - t0 : b - t0].all()]
            if not complete:
                continue
            # one slice from the first to the last complete chunk of the run
            d0, d1 = complete[0][1], complete[-1][2]
            data = emb[d0:d1]
            for i, a, b in complete:
                block = data[a - d0 : b - d0]
                if np.isnan(block).any():
                    # a mask without data (a lost chunk file): treat as missing, it is recomputed
                    warnings.warn(f"tile memo {self._label((grid, chunks[i]))} is marked filled but holds NaN; "
                                  "recomputing it", stacklevel=4)
                    continue
                out[i] = block
        return out

    def _label(self, ref: ChunkRef) -> str:
        (chrom, layer, offset), chunk = ref
        return f"{self.genome.names[chrom]} layer {layer} offset {offset} chunk {chunk}"

    def _write_chunk(self, ref: ChunkRef, rows: np.ndarray) -> np.ndarray:
        grid, _ = ref
        t0, t1 = self.layout.tile_range(ref)
        if rows.shape != (t1 - t0, self.dim):
            raise GidxError(f"encoder returned {rows.shape} for a chunk of {t1 - t0} tiles of dim {self.dim}")
        emb, filled = self._grid_arrays(grid, create=True)
        block = rows.astype(self.dtype, copy=False)
        emb[t0:t1] = block  # data first ...
        filled[t0:t1] = True  # ... then the mask (see module docstring)
        self.stats.chunks_computed += 1
        self.stats.tiles_computed += t1 - t0
        return block

    def _pipeline(self, workers: int | None = None) -> Pipeline:
        enc = self.encoder
        return Pipeline(preprocess=self._sequences, collate=enc.collate, forward=enc.forward,
                        decollate=enc.decollate, batch_size=self.batch_size,
                        workers=self.workers if workers is None else workers,
                        forward_in_workers=bool(getattr(enc, "forward_in_workers", False)),
                        worker_init=self._sequences.reopen)

    def _filled_chunks(self, grid: Grid) -> set[int]:
        """Chunk numbers of a grid whose tiles are all filled (reads the mask only)."""
        arrays = self._grid_arrays(grid, create=False)
        if arrays is None:
            return set()
        mask = arrays[1][:]
        length = self.layout.chunk_len(grid)
        n_chunks = -(-len(mask) // length)
        padded = np.ones(n_chunks * length, dtype=bool)
        padded[: len(mask)] = mask
        return set(np.flatnonzero(padded.reshape(n_chunks, length).all(axis=1)).tolist())

    # ---- lookups ----------------------------------------------------------

    def _check_keys(self, keys: TileKeys) -> None:
        if not len(keys):
            return
        if keys.chrom.min() < 0 or keys.chrom.max() >= len(self.genome.names):
            raise GidxError("tile keys refer to chromosomes outside the memo's genome")
        if keys.layer.min() < 0 or keys.layer.max() >= self.tiling.layers or keys.offset.min() < 0 \
                or keys.offset.max() >= self.tiling.offsets:
            raise GidxError("tile keys refer to layers/offsets outside the memo's tiling")
        lengths = np.asarray(self.genome.lengths_list, dtype=np.int64)[keys.chrom]
        _, ends = self.tiling.tile_bounds(keys.layer, keys.offset, keys.index)
        if np.any(keys.index < 0) or np.any(ends > lengths):
            raise GidxError("tile keys refer to tiles outside their chromosome")

    def get(self, keys: TileKeys, progress: Callable | None = None) -> np.ndarray:
        """Embeddings of ``keys`` (as from ``TileAssignment.unique_tiles``: sorted by
        chrom, layer, offset, index), ``(len(keys), dim)`` float32. Missing tiles are
        computed now, a whole chunk at a time, and stored."""
        self._check_keys(keys)
        n = len(keys)
        out = np.empty((n, self.dim), dtype=np.float32)
        self.stats.tiles_requested += n
        if n == 0:
            return out
        # runs of keys in the same (grid, chunk): keys are sorted, so each run is a slice
        grid_change = np.ones(n, dtype=bool)
        grid_change[1:] = (keys.chrom[1:] != keys.chrom[:-1]) | (keys.layer[1:] != keys.layer[:-1]) \
            | (keys.offset[1:] != keys.offset[:-1])
        grid_starts = np.flatnonzero(grid_change)
        chunk = np.empty(n, dtype=np.int64)
        chunk_len = np.empty(n, dtype=np.int64)
        for a, b in zip(grid_starts.tolist(), np.append(grid_starts[1:], n).tolist()):
            length = self.layout.chunk_len((int(keys.chrom[a]), int(keys.layer[a]), int(keys.offset[a])))
            chunk[a:b] = keys.index[a:b] // length
            chunk_len[a:b] = length
        change = grid_change.copy()
        change[1:] |= chunk[1:] != chunk[:-1]
        starts = np.flatnonzero(change)
        refs = [((c, layer, o), k) for c, layer, o, k in zip(keys.chrom[starts].tolist(), keys.layer[starts].tolist(),
                                                             keys.offset[starts].tolist(), chunk[starts].tolist())]
        if len(set(refs)) < len(refs):
            raise GidxError("tile keys must be sorted by (chrom, layer, offset, index)")
        bounds = np.append(starts, n)
        # groups of at most n_slots chunks, so one group's chunks all fit in the cache at once
        step = self._cache.n_slots
        for g0 in range(0, len(refs), step):
            g1 = min(g0 + step, len(refs))
            rows = slice(int(bounds[g0]), int(bounds[g1]))
            slots, computed = self._resident_slots(refs[g0:g1], progress)
            run_sizes = np.diff(bounds[g0 : g1 + 1])
            self.stats.tiles_read += int(run_sizes[~np.asarray(computed, dtype=bool)].sum())
            # one gather per layer from the cache's slabs
            slot_of_key = np.repeat(np.asarray(slots, dtype=np.int64), run_sizes)
            local = keys.index[rows] - chunk[rows] * chunk_len[rows]
            layer = keys.layer[rows]
            for k in np.unique(layer).tolist():
                mine = np.flatnonzero(layer == k)
                slab_rows = slot_of_key[mine] * self._cache.slot_rows[k] + local[mine]
                out[rows.start + mine] = self._cache.slabs[k][slab_rows]
        return out

    def _resident_slots(self, refs: list[ChunkRef], progress) -> tuple[list[int], list[bool]]:
        """Cache slots of the chunks, loading them from disk or computing them as needed;
        and which of them were computed."""
        pin_from = self._cache.clock
        slots: list[int | None] = [self._cache.touch(ref) for ref in refs]
        hits = sum(s is not None for s in slots)
        self.stats.chunks_cached += hits
        position = {ref: i for i, ref in enumerate(refs)}
        by_grid: dict[Grid, list[int]] = {}
        for ref, slot in zip(refs, slots):
            if slot is None:
                by_grid.setdefault(ref[0], []).append(ref[1])
        missing: list[ChunkRef] = []
        for grid, chunks in by_grid.items():
            for c, block in zip(chunks, self._load_chunks(grid, chunks)):
                if block is None:
                    missing.append((grid, c))
                else:
                    slots[position[(grid, c)]] = self._cache.insert((grid, c), block, pin_from)

        def store(ref: ChunkRef, rows: np.ndarray) -> None:
            slots[position[ref]] = self._cache.insert(ref, self._write_chunk(ref, rows), pin_from)

        if missing:
            self._pipeline().run(missing, write=store, progress=progress)
        missing_set = set(missing)
        return slots, [ref in missing_set for ref in refs]

    # ---- bulk -------------------------------------------------------------

    def grids(self, chroms: list[int] | None = None) -> list[Grid]:
        codes = range(len(self.genome.names)) if chroms is None else chroms
        return [(c, layer, offset) for c in codes for layer in range(self.tiling.layers)
                for offset in range(self.tiling.offsets) if self.layout.n_tiles((c, layer, offset)) > 0]

    def chunk_refs(self, grid: Grid) -> list[ChunkRef]:
        return [(grid, c) for c in range(self.layout.n_chunks(grid))]

    def _chrom_codes(self, chroms: list[str]) -> list[int]:
        unknown = [c for c in chroms if c not in self.genome.code_of]
        if unknown:
            raise GidxError(f"chromosome(s) not in genome {self.genome.name}: {', '.join(unknown)}")
        return sorted({self.genome.code_of[c] for c in chroms})

    def fill(self, chroms: list[str] | None = None, all: bool = False, progress: Callable | None = None,
             workers: int | None = None) -> FillReport:
        """Precompute every tile of the given chromosomes (or, with ``all=True``, of the
        whole genome). Resumable: chunks already filled are skipped, so rerunning after a
        crash computes only the rest. ``progress(done, total, label)`` per chunk written."""
        if chroms is None and not all:
            raise GidxError("give the chromosomes to fill, or all=True for the whole genome")
        codes = None if all else self._chrom_codes(list(chroms))
        refs = [ref for grid in self.grids(codes) for ref in self.chunk_refs(grid)]
        t0 = time.perf_counter()
        before = self.stats.tiles_computed
        filled = {grid: self._filled_chunks(grid) for grid in {grid for grid, _ in refs}}

        def report(i: int, total: int, ref: ChunkRef) -> None:
            if progress is not None:
                progress(i, total, self._label(ref))

        # what a bulk fill writes is not cached: it would only evict what lookups use
        stats = self._pipeline(workers).run(refs, write=self._write_chunk,
                                            is_done=lambda ref: ref[1] in filled[ref[0]], progress=report)
        return FillReport(len(refs), stats.skipped, stats.items, self.stats.tiles_computed - before,
                          time.perf_counter() - t0)

    # ---- inspection -------------------------------------------------------

    def info(self) -> dict:
        """Address, inputs, filled fraction per layer, bytes on disk."""
        self.refresh()
        layers = []
        filled_total = tiles_total = 0
        for layer, size in enumerate(self.tiling.sizes):
            n_all = n_filled = 0
            for grid in self.grids():
                if grid[1] != layer:
                    continue
                n = self.layout.n_tiles(grid)
                n_all += n
                arrays = self._grid_arrays(grid, create=False)
                if arrays is not None:
                    n_filled += int(np.count_nonzero(arrays[1][:]))
            layers.append({"layer": layer, "tile_size": size, "tiles": n_all, "filled": n_filled,
                           "fraction": n_filled / n_all if n_all else 0.0})
            filled_total += n_filled
            tiles_total += n_all
        return {"address": self.address, "path": str(self.path), "exists": (self.path / "zarr.json").is_file(),
                "inputs": self.inputs, "dim": self.dim, "dtype": self.dtype, "chunk_bp": self.chunk_bp,
                "layers": layers,
                "tiles": tiles_total, "filled": filled_total,
                "fraction": filled_total / tiles_total if tiles_total else 0.0,
                "genome_bp": self.genome.total_bp, "bytes_on_disk": _du(self.path)}

    def verify(self, sample: int = 256, seed: int = 0, repair: bool = False) -> dict:
        """Spot-check: recompute ``sample`` filled tiles (drawn at random over all filled
        tiles) and compare with what is stored. A chunk is *bad* when a sampled tile
        differs beyond float tolerance, holds NaN although marked filled, or cannot be
        read. ``repair=True`` recomputes the bad chunks: their masks are cleared first
        (so an interrupted repair leaves them missing, not wrong), then each is rewritten
        like any fill (data, then mask)."""
        self.refresh()
        tolerance = {"float32": 1e-4, "float16": 4e-3}[self.dtype]
        rng = np.random.default_rng(seed)
        candidates: list[tuple[Grid, np.ndarray]] = []
        for grid in self.grids():
            arrays = self._grid_arrays(grid, create=False)
            if arrays is not None:
                idx = np.flatnonzero(arrays[1][:])
                if len(idx):
                    candidates.append((grid, idx))
        counts = np.array([len(idx) for _, idx in candidates], dtype=np.int64)
        total = int(counts.sum())
        picks = np.sort(rng.choice(total, size=min(sample, total), replace=False)) if total else np.zeros(0, int)
        owner = np.searchsorted(np.cumsum(counts), picks, side="right")
        bad: list[dict] = []
        bad_chunks: set[ChunkRef] = set()
        checked = 0
        for g in np.unique(owner):
            grid, idx = candidates[g]
            tiles = idx[picks[owner == g] - (np.cumsum(counts)[g] - counts[g])]
            chrom, layer, offset = grid
            starts, ends = self.tiling.tile_bounds(layer, offset, tiles)
            expected = self.encoder.embed(self.genome.fetch(np.full(len(tiles), chrom), starts, ends))
            emb, _ = self._grid_arrays(grid, create=False)
            chunk_of = tiles // self.layout.chunk_len(grid)
            for c in np.unique(chunk_of).tolist():
                ref = (grid, c)
                t0, t1 = self.layout.tile_range(ref)
                mine = chunk_of == c
                checked += int(mine.sum())
                try:
                    got = np.asarray(emb[t0:t1], dtype=np.float32)[tiles[mine] - t0]
                except Exception as e:  # an unreadable (corrupted) chunk file
                    problems = {int(t): f"unreadable: {type(e).__name__}: {e}" for t in tiles[mine]}
                else:
                    diff = np.abs(got - expected[mine]).max(axis=1)
                    problems = {int(t): "marked filled but holds NaN" if np.isnan(row).any()
                                else f"differs from recomputed by {d:.3g}"
                                for t, row, d in zip(tiles[mine], got, diff)
                                if np.isnan(row).any() or d > tolerance}
                for tile, reason in problems.items():
                    bad.append({"chrom": self.genome.names[chrom], "layer": layer, "offset": offset, "tile": tile,
                                "reason": reason})
                    bad_chunks.add(ref)
        if repair and bad_chunks:
            refs = sorted(bad_chunks)
            for ref in refs:
                t0, t1 = self.layout.tile_range(ref)
                self._grid_arrays(ref[0], create=False)[1][t0:t1] = False
            self.refresh()
            self._pipeline().run(refs, write=self._write_chunk)
        return {"address": self.address, "checked": checked, "bad_tiles": bad, "bad_chunks": len(bad_chunks),
                "repaired": len(bad_chunks) if repair else 0, "ok": not bad}


def _du(path: Path) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(folder, name)).st_size
            except OSError:  # a chunk replaced while we walk
                pass
    return total


def _open_or_create_group(path: Path, attributes: dict | None = None):
    """Open a Zarr group, creating it (with ``attributes``) if needed. Two processes may
    create it at once; the loser's ContainsGroupError means it exists now: open it."""
    import zarr

    try:
        return zarr.open_group(path, mode="a", attributes=attributes)
    except zarr.errors.ContainsGroupError:
        return zarr.open_group(path, mode="a")


def _adjacent_runs(chunks: list[int]) -> list[list[int]]:
    """Positions in ``chunks`` (sorted chunk numbers) grouped into runs of consecutive numbers."""
    runs: list[list[int]] = []
    for i, c in enumerate(chunks):
        if runs and c == chunks[runs[-1][-1]] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def encoder_from_identity(identity: dict):
    """Rebuild an encoder from the identity stored with a memo, where that identity is
    all it takes (kmer: parameters only); None otherwise (a model needs its weights)."""
    if identity.get("name") != "kmer":
        return None
    from .encoders.kmer import KmerEncoder

    try:
        encoder = KmerEncoder(identity["k"], identity["dim"], identity["seed"], identity["canonical"])
    except (KeyError, GidxError):
        return None
    return encoder if encoder.identity() == identity else None


def verify_index_memos(index, samples: int = 64, repair: bool = False) -> list[str]:
    """``gidx check`` on every tile memo of an index (``<index>/tiles.zarr/<address>``)
    built for the index's genome whose encoder can be rebuilt from its stored identity.
    Returns one line per problem, plus ``refilled ...`` lines for repairs."""
    root = Path(index.path) / "tiles.zarr"
    if not root.is_dir():
        return []
    genome = index.genome
    lines: list[str] = []
    for folder in sorted(p for p in root.iterdir() if (p / "zarr.json").is_file()):
        attrs = json.loads((folder / "zarr.json").read_text()).get("attributes", {})
        inputs = attrs.get("inputs")
        if not attrs.get("gidx_tile_memo") or not inputs or inputs.get("genome") != genome.digest:
            continue  # not a memo, or one for another genome: nothing this index can check
        encoder = encoder_from_identity(inputs["encoder"])
        params = inputs["tiling"]
        try:
            tiling = Tiling(params["base"], params["layers"], params["offsets"])
        except (KeyError, ValueError):
            tiling = None
        if encoder is None or tiling is None or tiling.params() != params:
            continue  # cannot recompute its tiles here (a model's weights, another tiling scheme)
        memo = TileMemo(root, genome, tiling, encoder, inputs["dtype"])
        name = folder.name[:12]
        if memo.address != folder.name:
            lines.append(f"tile memo {name}: stored inputs hash to another address ({memo.address[:12]})")
            continue
        report = memo.verify(sample=samples, repair=repair)
        for bad in report["bad_tiles"][:5]:
            lines.append(f"tile memo {name}: {bad['chrom']} layer {bad['layer']} offset {bad['offset']} "
                         f"tile {bad['tile']}: {bad['reason']}")
        if len(report["bad_tiles"]) > 5:
            lines.append(f"tile memo {name}: ... {len(report['bad_tiles']) - 5} more bad tiles")
        if report["repaired"]:
            lines.append(f"refilled {report['repaired']} chunk(s) of tile memo {name}")
    return lines
