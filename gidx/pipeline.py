"""A streaming embedding pipeline, generic over what it embeds.

Stages (DESIGN.md, "Embedding pipeline")::

    item --preprocess--> parts, each tagged (item number, position in the item)
         --batching (fixed batch_size, across item boundaries)--> collate --> forward
         --> decollate --> one row per part --> regrouped per item --> postprocess --> write

* ``preprocess(item) -> list of parts``: one item becomes any number of parts (a memo
  chunk -> its tiles' sequences; a long interval -> its windows). Zero parts is allowed;
  the item is then postprocessed with an empty ``(0, 0)`` block.
* Batches are filled part by part regardless of which item a part comes from, so batch
  boundaries do not depend on item boundaries; a part's row depends only on the part
  (encoders embed sequences independently), so the output does not depend on
  ``batch_size`` or ``workers``.
* ``postprocess(item, rows) -> result`` sees all rows of one item in part order;
  ``write(item, result)`` stores it (e.g. into a Zarr chunk at the item's position). Items
  complete, and are written, in whatever order their last part arrives.
* Resume: ``is_done(item)`` items are skipped before anything runs (the memo asks its
  ``filled`` masks), so a killed run restarted with the same items redoes only the rest.
* ``progress(done, total, item)`` is called after each written item (``total`` counts the
  items not skipped).

Execution. ``workers == 0``: everything runs in this process, with a plain iterator with
the same batching; torch is not imported (the kmer path stays torch-free).
``workers > 0``: a torch ``DataLoader`` over an ``IterableDataset``; worker ``w`` takes items
``w, w + W, ...`` and runs preprocess + collate (and forward + decollate too when
``forward_in_workers``: plain-CPU models such as kmer then scale over cores); the main
process runs the model otherwise (it owns the device), regroups and writes. Only the main
process writes, so chunk ownership is trivially disjoint within one run.
``worker_init()`` runs first in every worker (e.g. to reopen file handles that a forked
worker must not share with its parent).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np


@dataclass
class PipelineStats:
    items: int = 0  # items written by this run
    skipped: int = 0  # items already done before the run
    parts: int = 0
    batches: int = 0


@dataclass
class _Batch:
    """What crosses from the data side to the model side: the parts of one batch and
    which (item, position) each came from, plus the items first seen since the last batch
    with their part counts (so items with zero parts are announced too)."""

    item: np.ndarray  # int64, item number of each part
    position: np.ndarray  # int64, position of each part within its item
    started: list[tuple[int, int]]  # (item number, number of parts)
    payload: Any  # collated batch, or rows when the model ran on the data side


def _identity(x):
    return x


def _rows_unchanged(item, rows: np.ndarray) -> np.ndarray:
    return rows


def _apply_model(forward: Callable, decollate: Callable, batch) -> np.ndarray:
    return np.asarray(decollate(forward(batch), batch))


@dataclass
class _DataSide:
    """preprocess + batching + collate (+ model when run in workers) over a shard of items."""

    items: Sequence
    preprocess: Callable
    collate: Callable
    batch_size: int
    model: Callable | None  # batch -> rows, when the model runs on the data side
    worker_init: Callable | None = None

    def batches(self, numbers: Sequence[int]) -> Iterator[_Batch]:
        parts: list = []
        tags: list[tuple[int, int]] = []
        started: list[tuple[int, int]] = []

        def emit(n: int) -> _Batch:
            chunk, chunk_tags = parts[:n], tags[:n]
            del parts[:n], tags[:n]
            payload = self.collate(chunk) if chunk else None
            if payload is not None and self.model is not None:
                payload = self.model(payload)
            tag = np.asarray(chunk_tags, dtype=np.int64).reshape(-1, 2)
            batch = _Batch(tag[:, 0], tag[:, 1], list(started), payload)
            started.clear()
            return batch

        for number in numbers:
            item_parts = list(self.preprocess(self.items[number]))
            started.append((number, len(item_parts)))
            parts.extend(item_parts)
            tags.extend((number, pos) for pos in range(len(item_parts)))
            while len(parts) >= self.batch_size:
                yield emit(self.batch_size)
        if parts or started:
            yield emit(len(parts))


class _ShardedDataset:
    """torch IterableDataset body: each DataLoader worker takes every W-th item."""

    def __init__(self, side: _DataSide, numbers: list[int]):
        self.side, self.numbers = side, numbers

    def __iter__(self):
        import torch.utils.data

        info = torch.utils.data.get_worker_info()
        numbers = self.numbers if info is None else self.numbers[info.id :: info.num_workers]
        return self.side.batches(numbers)


def _run_worker_init(worker_init: Callable | None, _worker_id: int) -> None:
    if worker_init is not None:
        worker_init()


@dataclass
class Pipeline:
    """The stages (see the module docstring); ``run`` streams items through them."""

    preprocess: Callable[[Any], Sequence]
    collate: Callable[[list], Any]
    forward: Callable[[Any], Any]
    decollate: Callable[[Any, Any], np.ndarray]
    postprocess: Callable[[Any, np.ndarray], Any] = _rows_unchanged
    batch_size: int = 64
    workers: int = 0
    forward_in_workers: bool = False
    worker_init: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")

    def run(
        self,
        items: Sequence,
        write: Callable[[Any, Any], None],
        is_done: Callable[[Any], bool] | None = None,
        progress: Callable[[int, int, Any], None] | None = None,
    ) -> PipelineStats:
        stats = PipelineStats()
        numbers = [i for i, item in enumerate(items) if not (is_done and is_done(item))]
        stats.skipped = len(items) - len(numbers)
        if not numbers:
            return stats
        model_on_data_side = self.workers > 0 and self.forward_in_workers
        # module-level partial, not a bound method: workers started by "spawn" must pickle it
        model = partial(_apply_model, self.forward, self.decollate)
        side = _DataSide(items, self.preprocess, self.collate, self.batch_size,
                         model if model_on_data_side else None, self.worker_init)
        total = len(numbers)
        pending: dict[int, list] = {}  # item number -> [rows per position, parts still missing]

        def finish(number: int) -> None:
            rows, _ = pending.pop(number)
            block = np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32)
            item = items[number]
            write(item, self.postprocess(item, block))
            stats.items += 1
            if progress is not None:
                progress(stats.items, total, item)

        for batch in self._batches(side, numbers):
            stats.batches += 1
            for number, n_parts in batch.started:
                pending[number] = [[None] * n_parts, n_parts]
                if n_parts == 0:
                    finish(number)
            if not len(batch.item):
                continue
            rows = batch.payload if model_on_data_side else model(batch.payload)
            stats.parts += len(batch.item)
            for number, pos, row in zip(batch.item.tolist(), batch.position.tolist(), rows):
                entry = pending[number]
                entry[0][pos] = row
                entry[1] -= 1
                if entry[1] == 0:
                    finish(number)
        return stats

    def _batches(self, side: _DataSide, numbers: list[int]) -> Iterator[_Batch]:
        if self.workers == 0:
            return side.batches(numbers)
        import torch.utils.data

        loader = torch.utils.data.DataLoader(
            _torch_dataset_class()(side, numbers), batch_size=None, collate_fn=_identity,
            num_workers=min(self.workers, len(numbers)), worker_init_fn=partial(_run_worker_init, side.worker_init),
        )
        return iter(loader)


_TORCH_DATASET = None


def _torch_dataset_class():
    """``_ShardedDataset`` as a torch ``IterableDataset`` (which the DataLoader requires to
    shard by worker), built on first use so that importing this module never imports torch."""
    global _TORCH_DATASET
    if _TORCH_DATASET is None:
        import torch.utils.data

        _TORCH_DATASET = type("TorchShardedDataset", (_ShardedDataset, torch.utils.data.IterableDataset),
                              {"__module__": __name__})
    return _TORCH_DATASET


def __getattr__(name: str):
    # lets pickle find the class by name in a spawned worker (start method "spawn")
    if name == "TorchShardedDataset":
        return _torch_dataset_class()
    raise AttributeError(name)
