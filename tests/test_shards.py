import json
import os

import numpy as np
import pyarrow as pa
import pytest

from groot_ft.data.lerobot import LeRobotDataset
from groot_ft.data.video import read_frames
from groot_ft.modality import load_modality_config
from groot_ft.shards import ShardReader, ShardSet, build_shards, decode_jpeg, plan_shards
from tests.conftest import DEMO_MODALITY

CFG = load_modality_config(DEMO_MODALITY)


def test_every_valid_step_appears_exactly_once():
    lengths = {0: 40, 1: 55, 2: 15, 3: 70}  # episode 2 is shorter than the 16-step horizon: no valid step
    plan = plan_shards(lengths, CFG, shard_size=30, episode_sampling_rate=0.1, seed=7)
    seen = {}
    for shard in plan:
        for episode, steps in shard:
            for s in steps:
                key = (episode, int(s))
                assert key not in seen
                seen[key] = True
    expected = {(e, s) for e, n in lengths.items() for s in range(max(0, n - 16 + 1))}
    assert set(seen) == expected
    total = len(expected)
    assert len(plan) == -(-total // 30)
    sizes = [sum(len(s) for _, s in shard) for shard in plan]
    assert max(sizes) - min(sizes) <= 10  # greedy balancing keeps shards within one split of each other


def test_plan_is_seeded():
    lengths = {i: 30 + i for i in range(10)}
    a = plan_shards(lengths, CFG, 50, 0.25, seed=1)
    b = plan_shards(lengths, CFG, 50, 0.25, seed=1)
    c = plan_shards(lengths, CFG, 50, 0.25, seed=2)
    flat = lambda p: [(e, s.tolist()) for shard in p for e, s in shard]  # noqa: E731
    assert flat(a) == flat(b) and flat(a) != flat(c)


def test_no_valid_step_is_a_clear_error():
    with pytest.raises(ValueError, match="action horizon"):
        plan_shards({0: 5}, CFG, 10, 0.1, seed=0)


@pytest.fixture(scope="module")
def built(demo_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    build_shards(demo_dataset, CFG, out, image_edge=48, shard_size=64, seed=3, progress=False)
    return out


def test_shard_samples_match_the_dataset(demo_dataset, built):
    shards = ShardSet.open(built)
    ds = LeRobotDataset(demo_dataset)
    assert shards.manifest["samples"] == sum(max(0, e.length - 15) for e in ds.episodes)
    table = _read(shards.shard_paths[0])
    reader = ShardReader(table, CFG, shards.dims)  # what the loader reads samples with
    assert len(reader) == table.num_rows == shards.shard_lengths[0]
    for i in (0, 5, table.num_rows - 1):
        step = reader.sample(i)
        episode_index, t = table.column("episode_index")[i].as_py(), table.column("step")[i].as_py()
        episode = ds.load_episode(episode_index, CFG)
        for modality, rows in (("state", slice(t, t + 1)), ("action", slice(t, t + 16))):
            for key in ("arm", "gripper"):
                assert step[modality][key].dtype == np.float32
                np.testing.assert_array_equal(step[modality][key], getattr(episode, modality)[key][rows])
        assert step["language"]["annotation.human.task_description"] == episode.language[t]
        frame = step["video"]["front"][0]
        assert frame.shape == (48, 48, 3)
        original = read_frames(ds.video_path(episode_index, "observation.images.front"), [t])[0]
        small = original.reshape(48, 2, 48, 2, 3).mean(axis=(1, 3))
        assert np.abs(frame.astype(float) - small).mean() < 6  # JPEG of the area-resized frame


def test_rebuild_is_deterministic_and_incremental(demo_dataset, built, tmp_path):
    first = {p.name: p.read_bytes() for p in built.glob("shard_*.arrow")}
    manifest = build_shards(demo_dataset, CFG, built, image_edge=48, shard_size=64, seed=3, progress=False)
    assert json.loads(manifest.read_text())["episodes_rebuilt"] == 0
    assert {p.name: p.read_bytes() for p in built.glob("shard_*.arrow")} == first


def test_jpeg_round_trip_is_close():
    yy, xx = np.mgrid[0:48, 0:48]
    img = np.stack([xx * 5, yy * 5, (xx + yy) * 2], axis=-1).astype(np.uint8)  # smooth, like rendered scenes
    from groot_ft.shards import encode_jpeg

    assert np.abs(decode_jpeg(encode_jpeg(img)).astype(int) - img).mean() < 2



@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to compare against one")
def test_jpeg_bytes_do_not_depend_on_the_cpus_available():
    """FFmpeg's encoder would cut a picture into one slice per thread: shards built on a laptop, a 2-core CI runner
    and a 1-CPU SLURM job must still be the same bytes."""
    import av

    from groot_ft.shards import FrameEncoder

    yy, xx = np.mgrid[0:120, 0:160]
    img = np.stack([xx, yy * 2, (xx * yy) % 251], axis=-1).astype(np.uint8)
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    cpus = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(cpus)})
        one = FrameEncoder(96).encode(frame)
    finally:
        os.sched_setaffinity(0, cpus)
    assert FrameEncoder(96).encode(frame) == one


def test_letter_box_frames_are_stored_by_their_longer_side(demo_dataset, built, tmp_path):
    """N1.7's letterbox pads a frame to a square before resizing it: the shards then store the longer side at the
    working size, so the processor's padding gives edge x edge without a second resample."""
    import av

    from groot_ft.geometry import stored_frame_size
    from groot_ft.image_transforms import AugmentationParams, ImageTransform
    from groot_ft.shards import FrameEncoder, read_cache_info

    assert stored_frame_size(480, 640, 256) == (256, 341)
    assert stored_frame_size(480, 640, 256, letter_box=True) == (192, 256)
    yy, xx = np.mgrid[0:120, 0:160]
    img = np.stack([xx, yy * 2, (xx + yy) % 251], axis=-1).astype(np.uint8)
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    stored = decode_jpeg(FrameEncoder(48, letter_box=True).encode(frame))
    assert stored.shape == (36, 48, 3) and decode_jpeg(FrameEncoder(48).encode(frame)).shape == (48, 64, 3)
    boxed = ImageTransform(48, 0.95, letter_box=True).apply(stored[None], AugmentationParams())
    assert boxed.shape == (1, 3, 48, 48)
    # the option is part of every episode cache's key and of the manifest
    out = tmp_path / "boxed"
    build_shards(demo_dataset, CFG, out, image_edge=48, shard_size=64, seed=3, progress=False, letter_box=True)
    manifest = json.loads((out / "manifest.json").read_text())
    plain = json.loads((built / "manifest.json").read_text())
    assert manifest["letter_box"] is True and plain["letter_box"] is False
    cache = "episodes/episode_000000.arrow"
    assert read_cache_info(out / cache).fingerprint != read_cache_info(built / cache).fingerprint
    # the demo's frames are square: padding changes nothing, so the stored content is the same
    assert read_cache_info(out / cache).content == read_cache_info(built / cache).content


def test_needed_frames_are_the_clipped_video_offsets_of_the_valid_steps():
    from dataclasses import replace

    from groot_ft.shards import needed_frames, valid_steps

    for deltas in ([0], [-3, 0], [-40, -1, 0, 2], [5], [0, 60]):
        cfg = replace(CFG, video=replace(CFG.video, delta_indices=deltas))
        for n in (0, 10, 16, 17, 40):
            want = sorted({min(max(s + d, 0), n - 1) for s in valid_steps(n, cfg).tolist() for d in deltas})
            assert needed_frames(n, cfg).tolist() == want, (deltas, n)

# --- LeRobot v3.0 input ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def v3_dataset(demo_dataset, tmp_path_factory):
    from groot_ft.data.convert import v3_file_counts, write_v3_dataset

    out = write_v3_dataset(
        demo_dataset, tmp_path_factory.mktemp("v3") / "dataset", data_files_size_in_mb=0.01, video_files_size_in_mb=0.05
    )
    counts = v3_file_counts(out)
    assert counts["data"] >= 2 and counts["observation.images.front"] >= 2  # episodes share and span files
    return out


def _shard_tables(root):
    shards = ShardSet.open(root)
    tables = []
    for path in shards.shard_paths:
        with pa.memory_map(str(path)) as src:
            tables.append(pa.ipc.open_file(src).read_all())
    return shards, tables


def test_v3_shards_equal_the_v2_shards(demo_dataset, v3_dataset, built, tmp_path):
    out = tmp_path / "shards3"
    build_shards(v3_dataset, CFG, out, image_edge=48, shard_size=64, seed=3, progress=False)
    (s2, t2), (s3, t3) = _shard_tables(built), _shard_tables(out)
    assert s3.manifest["samples"] == s2.manifest["samples"] and s3.shard_lengths == s2.shard_lengths
    assert s3.dims == s2.dims
    for a, b in zip(t2, t3, strict=True):
        assert a.column_names == b.column_names
        for name in a.column_names:
            if name.startswith("video."):
                continue
            assert a.column(name).equals(b.column(name)), name  # state, action, language, steps: identical
        for name in (n for n in a.column_names if n.startswith("video.")):
            for x, y in zip(a.column(name).to_pylist()[:8], b.column(name).to_pylist()[:8], strict=True):
                fx = np.stack([decode_jpeg(f) for f in x]).astype(float)
                fy = np.stack([decode_jpeg(f) for f in y]).astype(float)
                assert np.abs(fx - fy).mean() < 4  # same frame (v3 video re-encoded once more)
    again = build_shards(v3_dataset, CFG, out, image_edge=48, shard_size=64, seed=3, progress=False)
    assert json.loads(again.read_text())["episodes_rebuilt"] == 0


def test_v3_fingerprint_covers_the_episode_range_and_shared_files(v3_dataset, tmp_path):
    import shutil

    from groot_ft.shards import episode_fingerprint

    root = tmp_path / "ds"
    shutil.copytree(v3_dataset, root)
    ds = LeRobotDataset(root)
    same_file = [e.index for e in ds.episodes if ds.episode_data_file(e.index) == ds.episode_data_file(0)]
    assert len(same_file) >= 2
    fps = {e: episode_fingerprint(ds, e, CFG, 48) for e in same_file}
    assert len(set(fps.values())) == len(same_file)
    video = ds.episode_video_segment(0, "observation.images.front").path
    video.write_bytes(video.read_bytes() + b"\0")  # the shared file changed: every episode in it is stale
    assert episode_fingerprint(LeRobotDataset(root), 0, CFG, 48) != fps[0]


# --- parallel, deterministic, incremental builds ---------------------------------------------------------------------
def _files(root, pattern):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.glob(pattern))}


def test_builds_are_byte_identical_across_directories_and_thread_counts(demo_dataset, built, tmp_path):
    out = tmp_path / "threads2"
    build_shards(demo_dataset, CFG, out, image_edge=48, shard_size=64, seed=3, progress=False, threads=2)
    assert _files(out, "shard_*.arrow") == _files(built, "shard_*.arrow")
    assert _files(out, "episodes/*.arrow") == _files(built, "episodes/*.arrow")
    assert len(_files(out, "shard_*.arrow")) >= 3


def test_frames_past_the_last_needed_one_are_not_stored(demo_dataset, built):
    from groot_ft.shards import needed_frames

    with pa.memory_map(str(built / "episodes" / "episode_000000.arrow")) as src:
        cache = pa.ipc.open_file(src).read_all()
    n = cache.num_rows
    assert list(needed_frames(n, CFG)) == list(range(n - 15))  # video offset 0, 16-step action chunks
    present = cache.column("video.front").is_valid().to_pylist()
    assert present == [True] * (n - 15) + [False] * 15


def _set_action(path, row, value):
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    col = table.column("action").combine_chunks()
    values = col.flatten().to_numpy(zero_copy_only=False).copy().reshape(len(col), -1)
    values[row, 0] = value
    flat = pa.array(values.reshape(-1), col.type.value_type)
    new = pa.FixedSizeListArray.from_arrays(flat, values.shape[1]) if pa.types.is_fixed_size_list(col.type) else \
        pa.ListArray.from_arrays(pa.array(np.arange(0, values.size + 1, values.shape[1], dtype=np.int32)), flat)
    pq.write_table(table.set_column(table.column_names.index("action"), "action", new), path)


def test_changing_one_episode_rewrites_only_the_shards_that_hold_it(demo_copy, tmp_path):
    import os

    out = tmp_path / "shards"
    kwargs = dict(image_edge=48, shard_size=32, episode_sampling_rate=0.5, seed=5, progress=False)
    build_shards(demo_copy, CFG, out, **kwargs)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("shard_*.arrow")}
    shards = ShardSet.open(out)
    holders = set()
    for path in shards.shard_paths:
        with pa.memory_map(str(path)) as src:
            if 2 in set(pa.ipc.open_file(src).read_all().column("episode_index").to_pylist()):
                holders.add(path.name)
    assert 1 <= len(holders) < len(before)

    ds = LeRobotDataset(demo_copy)
    _set_action(ds.episode_data_file(2), row=3, value=123.5)
    leftover = out / "episodes" / ".episode_000002.arrow.k3j9.tmp"  # what a build killed before its commit leaves
    leftover.write_bytes(b"half a cache")
    manifest = json.loads(build_shards(demo_copy, CFG, out, **kwargs).read_text())
    assert manifest["episodes_rebuilt"] == 1 and manifest["shards_rebuilt"] == len(holders)
    assert not leftover.exists() and not list(out.rglob("*.tmp"))
    for p in out.glob("shard_*.arrow"):
        if p.name in holders:
            assert p.read_bytes() != before[p.name][1]
        else:
            assert (p.stat().st_mtime_ns, p.read_bytes()) == before[p.name]
    rows = [r for path in ShardSet.open(out).shard_paths
            for r in _read(path).to_pylist() if r["episode_index"] == 2 and r["step"] == 3]
    assert len(rows) == 1 and rows[0]["action.arm"][0] == 123.5  # first action of the chunk at step 3

    # same content, new file date: the cache is re-made but no shard is written
    os.utime(ds.episode_data_file(4))
    manifest = json.loads(build_shards(demo_copy, CFG, out, **kwargs).read_text())
    assert manifest["episodes_rebuilt"] == 1 and manifest["shards_rebuilt"] == 0


def _read(path):
    with pa.memory_map(str(path)) as src:
        return pa.ipc.open_file(src).read_all()


def test_threads_below_one_is_a_clear_error(demo_dataset, tmp_path):
    with pytest.raises(ValueError, match="threads must be >= 1"):
        build_shards(demo_dataset, CFG, tmp_path / "x", image_edge=48, threads=0, progress=False)
