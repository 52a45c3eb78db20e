"""Training batches from shard files: a weighted mixture of datasets that is exact, balanced and resumable.

The sample stream is a pure function of the seed. Each epoch, ``default_rng([seed, epoch])`` draws a schedule of
as many shard visits as there are shards in all sources: a source is picked with probability proportional to
``weight / mean shard length`` (so the share of *samples* follows the weights, as upstream's
``ShardedMixtureDataset``), and each source hands out its shards from a shuffled list, reshuffled when exhausted.
With one source an epoch is therefore exactly one pass over every sample. A visited shard yields its rows in a
seeded permutation.

Every (rank, worker) consumer walks that same stream and keeps the global positions ``p`` with
``p % consumers == consumer``, so every rank sees a disjoint, equally sized slice whatever the number of shards,
and a consumer can skip to batch ``k`` by counting shard lengths instead of reading data. Augmentation randomness
is keyed by (seed, epoch, position), so a resumed run draws the same crops and jitter as an uninterrupted one.
While one shard is consumed, a background thread opens the next one the consumer needs and asks the kernel to read
it ahead, so the next shard is in the page cache by the time it is reached.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import IterableDataset, get_worker_info

from groot_ft.config import ConfigError
from groot_ft.modality import EmbodimentModalityConfig
from groot_ft.shard_reader import ShardReader, ShardSet

Process = Callable[[dict[str, Any], np.random.Generator], dict[str, Any]]


@dataclass(frozen=True)
class MixtureSource:
    """One dataset of a mixture: its shards, its modality config, its per-sample processor call and mix weight."""

    shards: ShardSet
    cfg: EmbodimentModalityConfig
    process: Process
    weight: float = 1.0


def _open_shard(source: MixtureSource, shard: int) -> ShardReader:
    path = str(source.shards.shard_paths[shard])
    if hasattr(os, "posix_fadvise"):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)  # asynchronous read-ahead into the page cache
        finally:
            os.close(fd)
    with pa.memory_map(path) as src:
        table = pa.ipc.open_file(src).read_all()
    return ShardReader(table, source.cfg, source.shards.dims)


class ShardedMixtureDataset(IterableDataset):
    """Yields collated batches (use with ``DataLoader(batch_size=None)``)."""

    def __init__(
        self,
        sources: list[MixtureSource],
        collate: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 42,
        start_batch: int = 0,
    ):
        if not sources:
            raise ValueError("ShardedMixtureDataset needs at least one source")
        for s in sources:
            if not (np.isfinite(s.weight) and s.weight > 0):
                raise ValueError(f"{s.shards.root}: mix weight must be finite and > 0, got {s.weight}")
            if not s.shards.shard_lengths:
                raise ValueError(f"{s.shards.root}: no shards")
        self.sources = sources
        self.collate = collate
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.start_batch = start_batch
        total = sum(s.shards.manifest["samples"] for s in sources)
        if total < batch_size * world_size:
            raise ConfigError(
                f"{', '.join(str(s.shards.root) for s in sources)}: {total} samples cannot fill one batch of "
                f"{batch_size} on each of {world_size} processes; lower global_batch_size or add data"
            )
        lengths = [np.asarray(s.shards.shard_lengths, dtype=np.float64) for s in sources]
        pick = np.array([s.weight / ls.mean() for s, ls in zip(sources, lengths)])
        self.source_probs = pick / pick.sum()
        self.visits_per_epoch = sum(len(ls) for ls in lengths)

    def sample_shares(self) -> np.ndarray:
        """Expected fraction of samples drawn from each source (the normalised mix weights)."""
        means = np.array([np.mean(s.shards.shard_lengths) for s in self.sources])
        share = self.source_probs * means
        return share / share.sum()

    def schedule(self, epoch: int) -> list[tuple[int, int]]:
        """(source, shard) of every shard visit of the epoch, in order."""
        rng = np.random.default_rng([self.seed, epoch])
        queues: list[list[int]] = [[] for _ in self.sources]
        visits = []
        for _ in range(self.visits_per_epoch):
            src = int(rng.choice(len(self.sources), p=self.source_probs)) if len(self.sources) > 1 else 0
            if not queues[src]:
                queues[src] = [int(i) for i in rng.permutation(len(self.sources[src].shards.shard_lengths))[::-1]]
            visits.append((src, queues[src].pop()))
        return visits

    def row_order(self, epoch: int, visit: int, src: int, shard: int) -> np.ndarray:
        """The order in which a visit reads its shard's rows (its own RNG, so skipped visits cost nothing)."""
        rng = np.random.default_rng([self.seed, epoch, visit, 2])
        return rng.permutation(self.sources[src].shards.shard_lengths[shard])

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        consumers = self.world_size * workers
        consumer = self.rank * workers + worker
        # DataLoader hands out batch k from worker k % workers; skip what this worker already produced.
        skip_batches = (self.start_batch - worker + workers - 1) // workers if self.start_batch > worker else 0
        skip = skip_batches * self.batch_size  # samples of this consumer to pass over without reading them

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-prefetch")
        pending: dict[tuple[int, int], Future] = {}
        batch: list[dict[str, Any]] = []
        position = 0  # global position of the next sample in the stream
        epoch = 0
        try:
            while True:
                visits = self.schedule(epoch)
                for i, (src, shard) in enumerate(visits):
                    n = self.sources[src].shards.shard_lengths[shard]
                    # this consumer's rows of the visit: positions p in [position, position + n), p % consumers
                    first = (consumer - position) % consumers
                    mine = np.arange(first, n, consumers)
                    start, position = position, position + n
                    if skip >= len(mine):
                        skip -= len(mine)
                        continue
                    mine, skip = mine[skip:], 0
                    order = self.row_order(epoch, i, src, shard)
                    key = (src, shard)
                    future = pending.pop(key, None) or pool.submit(_open_shard, self.sources[src], shard)
                    nxt = visits[i + 1] if i + 1 < len(visits) else None
                    if nxt is not None and nxt != key and nxt not in pending:
                        pending[nxt] = pool.submit(_open_shard, self.sources[nxt[0]], nxt[1])
                    reader = future.result()
                    source = self.sources[src]
                    done = 0
                    while done < len(mine):
                        rows = mine[done : done + self.batch_size - len(batch)]
                        done += len(rows)
                        # read (JPEG-decode) the batch's rows back to back, then process them: the JPEG decoder and
                        # the processor alternating per sample evict each other's code and data from the CPU caches
                        steps = [reader.sample(int(order[j])) for j in rows]
                        for j, step in zip(rows, steps, strict=True):
                            rng = np.random.default_rng([self.seed, epoch, start + int(j), 1])
                            batch.append(source.process(step, rng))
                        if len(batch) == self.batch_size:
                            yield self.collate(batch)
                            batch = []
                    del reader
                epoch += 1
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
