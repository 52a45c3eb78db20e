"""Training batches from shard files: exact, balanced, and resumable at any batch.

Every (rank, worker) consumer walks the same seeded global sample stream (shards in a per-epoch order, samples in a
per-epoch order inside each shard) and keeps the positions ``p`` with ``p % consumers == consumer``. So every rank
sees a disjoint, equally sized slice whatever the number of shards, and a consumer can skip to batch ``k`` by index
arithmetic instead of replaying data. Augmentation randomness is keyed by (seed, epoch, position), so a resumed run
draws the same crops and jitter as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import IterableDataset, get_worker_info

from groot_ft.modality import EmbodimentModalityConfig
from groot_ft.shards import ShardSet, sample_from_row


class ShardBatchStream(IterableDataset):
    """Yields collated batches (use with ``DataLoader(batch_size=None)``)."""

    def __init__(
        self,
        shards: ShardSet,
        cfg: EmbodimentModalityConfig,
        process: Callable[[dict[str, Any], np.random.Generator], dict[str, Any]],
        collate: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 42,
        start_batch: int = 0,
    ):
        self.shards = shards
        self.cfg = cfg
        self.process = process
        self.collate = collate
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.start_batch = start_batch
        if shards.manifest["samples"] < batch_size * world_size:
            raise ValueError(
                f"{shards.root}: {shards.manifest['samples']} samples cannot fill one batch of {batch_size} on each of "
                f"{world_size} processes; lower global_batch_size or add data"
            )

    def _epoch_positions(self, epoch: int) -> Iterator[tuple[int, int, int]]:
        """(global position, shard, row) in the epoch's order."""
        rng = np.random.default_rng([self.seed, epoch])
        lengths = self.shards.shard_lengths
        position = 0
        for shard in rng.permutation(len(lengths)):
            for row in rng.permutation(lengths[shard]):
                yield position, int(shard), int(row)
                position += 1

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        consumers = self.world_size * workers
        consumer = self.rank * workers + worker
        # DataLoader hands out batch k from worker k % workers; skip what this worker already produced.
        skip_batches = (self.start_batch - worker + workers - 1) // workers if self.start_batch > worker else 0
        skip_samples = skip_batches * self.batch_size

        tables: dict[int, pa.Table] = {}
        batch: list[dict[str, Any]] = []
        seen = 0
        epoch = 0
        while True:
            for position, shard, row in self._epoch_positions(epoch):
                if position % consumers != consumer:
                    continue
                seen += 1
                if seen <= skip_samples:
                    continue
                if shard not in tables:
                    tables.clear()  # one shard's memory map at a time per worker
                    with pa.memory_map(str(self.shards.shard_paths[shard])) as src:
                        tables[shard] = pa.ipc.open_file(src).read_all()
                record = tables[shard].slice(row, 1).to_pylist()[0]
                step = sample_from_row(record, self.cfg, self.shards.dims)
                rng = np.random.default_rng([self.seed, epoch, position, 1])
                batch.append(self.process(step, rng))
                if len(batch) == self.batch_size:
                    yield self.collate(batch)
                    batch = []
            epoch += 1
