"""ShardedMixtureDataset: every sample once per pass, disjoint ranks, weighted mixtures, exact resume."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from groot_ft.data.loader import MixtureSource, ShardedMixtureDataset
from groot_ft.modality import load_modality_config
from groot_ft.shards import ShardSet, build_shards
from tests.conftest import DEMO_MODALITY

CFG = load_modality_config(DEMO_MODALITY)


def _identity(step, rng):
    # a sample is identified by its state and action values; the rng draw shows the augmentation key
    key = (step["state"]["arm"].tobytes(), step["action"]["arm"].tobytes())
    return {"key": key, "draw": float(rng.random())}


def _as_list(batch):
    return batch


@pytest.fixture(scope="module")
def shard_sets(demo_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("loader")
    small = build_shards(demo_dataset, CFG, root / "a", image_edge=16, shard_size=40, seed=1, progress=False,
                         episodes=[0, 1, 2])
    large = build_shards(demo_dataset, CFG, root / "b", image_edge=16, shard_size=100, seed=2, progress=False,
                         episodes=[3, 4, 5])
    return ShardSet.open(small.parent), ShardSet.open(large.parent)


def _take(stream, batches):
    return [s for batch in itertools.islice(iter(stream), batches) for s in batch]


def test_one_source_is_one_exact_pass_split_over_ranks(shard_sets):
    shards = shard_sets[0]
    total = shards.manifest["samples"]
    batch = 2
    per_rank = total // (2 * batch)
    seen = []
    for rank in range(2):
        stream = ShardedMixtureDataset([MixtureSource(shards, CFG, _identity)], _as_list, batch, rank=rank,
                                       world_size=2, seed=5)
        seen.append([s["key"] for s in _take(stream, per_rank)])
    assert not set(seen[0]) & set(seen[1])  # ranks never share a sample
    everything = seen[0] + seen[1]
    assert len(set(everything)) == len(everything) == per_rank * batch * 2
    # one full pass of a single source visits every sample exactly once
    stream = ShardedMixtureDataset([MixtureSource(shards, CFG, _identity)], _as_list, 1, seed=5)
    one_pass = [s["key"] for s in _take(stream, total)]
    assert len(set(one_pass)) == total


def test_resume_continues_the_same_stream(shard_sets):
    sources = [MixtureSource(shard_sets[0], CFG, _identity, 1.0), MixtureSource(shard_sets[1], CFG, _identity, 2.0)]
    full = ShardedMixtureDataset(sources, _as_list, 3, rank=1, world_size=2, seed=9)
    reference = _take(full, 40)
    resumed = ShardedMixtureDataset(sources, _as_list, 3, rank=1, world_size=2, seed=9, start_batch=25)
    assert _take(resumed, 15) == reference[25 * 3 :]  # same samples and same augmentation draws


def test_mixture_shares_follow_the_mix_ratios(shard_sets):
    a, b = shard_sets
    assert np.mean(a.shard_lengths) != np.mean(b.shard_lengths)  # the ratio must not be a count of shard visits
    stream = ShardedMixtureDataset([MixtureSource(a, CFG, _identity, 3.0), MixtureSource(b, CFG, _identity, 1.0)],
                                   _as_list, 4, seed=0)
    np.testing.assert_allclose(stream.sample_shares(), [0.75, 0.25])
    counts = np.zeros(2)
    for epoch in range(400):
        for src, shard in stream.schedule(epoch):
            counts[src] += (a, b)[src].shard_lengths[shard]
    assert abs(counts[0] / counts.sum() - 0.75) < 0.02
    # and the data really comes from both datasets
    keys_a = {s["key"] for s in _take(ShardedMixtureDataset([MixtureSource(a, CFG, _identity)], _as_list, 1), 200)}
    drawn = [s["key"] in keys_a for s in _take(stream, 150)]
    assert 0.55 < np.mean(drawn) < 0.95


def test_schedule_is_seeded_per_epoch(shard_sets):
    sources = [MixtureSource(s, CFG, _identity) for s in shard_sets]
    one = ShardedMixtureDataset(sources, _as_list, 2, seed=3)
    two = ShardedMixtureDataset(sources, _as_list, 2, seed=3)
    other = ShardedMixtureDataset(sources, _as_list, 2, seed=4)
    assert one.schedule(0) == two.schedule(0)
    assert one.schedule(0) != one.schedule(1) or one.schedule(0) != other.schedule(0)


def test_bad_weights_and_tiny_datasets_are_clear_errors(shard_sets):
    with pytest.raises(ValueError, match="mix weight"):
        ShardedMixtureDataset([MixtureSource(shard_sets[0], CFG, _identity, 0.0)], _as_list, 2)
    with pytest.raises(ValueError, match="cannot fill one batch"):
        ShardedMixtureDataset([MixtureSource(shard_sets[0], CFG, _identity)], _as_list, 10_000)


def test_processing_in_forked_workers_after_the_parent_used_it(demo_dataset, tmp_path):
    """The trainer may read samples before DataLoader forks its workers; the workers must not hang on helper
    threads the parent started (the JPEG decoder's scaler kept per thread did, until each process made its own)."""
    from torch.utils.data import DataLoader

    from groot_ft.image_transforms import ImageTransform

    shards = ShardSet.open(build_shards(demo_dataset, CFG, tmp_path / "s", image_edge=96, shard_size=40, seed=1,
                                       progress=False, episodes=[0, 1]).parent)
    transform = ImageTransform(96)  # full-size frames: products big enough for a BLAS to use its threads

    def process(step, rng):
        return transform(np.concatenate(list(step["video"].values())), rng, train=True)

    first = ShardedMixtureDataset([MixtureSource(shards, CFG, process)], _as_list, 2, seed=0)
    expected = _take(first, 4)  # the parent's own use comes first, as in training
    loader = DataLoader(ShardedMixtureDataset([MixtureSource(shards, CFG, process)], _as_list, 2, seed=0),
                        batch_size=None, num_workers=1, multiprocessing_context="fork", timeout=60)
    got = [s for batch in itertools.islice(iter(loader), 4) for s in batch]
    assert len(got) == 8 and got[0].shape == (2, 3, 96, 96)
    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))  # same samples, same augmentation
