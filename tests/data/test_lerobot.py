import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from groot_ft.data.lerobot import DatasetError, LeRobotDataset
from groot_ft.modality import load_modality_config
from tests.conftest import DEMO_MODALITY, GR1_MODALITY


def test_reads_gr1_groups_and_language(gr1_dataset):
    ds = LeRobotDataset(gr1_dataset)
    assert ds.version == "v2.0" and ds.fps == 20.0 and len(ds.episodes) == 5 and ds.num_frames == 2096
    cfg = load_modality_config(GR1_MODALITY)
    ep = ds.load_episode(0, cfg)
    table = pq.read_table(ds.data_path(0))
    state = np.stack(table.column("observation.state").to_numpy(zero_copy_only=False)).astype(np.float32)
    np.testing.assert_array_equal(ep.state["right_arm"], state[:, 22:29])
    assert ep.state["waist"].shape == (416, 3) and ep.action["left_hand"].shape == (416, 6)
    assert ep.language[0] == "pick the pear from the counter and place it in the plate"
    assert ds.video_original_key("ego_view_bg_crop_pad_res256_freq20") == "observation.images.ego_view"
    assert ds.video_path(0, "observation.images.ego_view").is_file()


def test_demo_episode_round_trip(demo_dataset):
    ds = LeRobotDataset(demo_dataset)
    cfg = load_modality_config(DEMO_MODALITY)
    ep = ds.load_episode(2, cfg)
    assert ep.length == ds.episodes[2].length
    assert ep.state["arm"].dtype == np.float32 and ep.state["gripper"].shape == (ep.length, 1)


def test_read_episode_table_names_missing_columns_and_files(demo_copy):
    ds = LeRobotDataset(demo_copy)
    with pytest.raises(DatasetError, match=r"episode_000001.parquet: episode 1 has no column gripper_force, joint_torque"):
        ds.read_episode_table(1, ["action", "joint_torque", "gripper_force"])
    ds.data_path(2).unlink()
    with pytest.raises(DatasetError, match="parquet file of episode 2 is missing"):
        ds.read_episode_table(2, ["action"])


@pytest.mark.parametrize(
    ("template", "message"),
    [("../../outside/{episode_index}.parquet", "escapes the dataset root"), ("data/{episode_chnk}.parquet", "episode_chnk")],
)
def test_bad_path_templates_are_refused(demo_copy, template, message):
    info_path = demo_copy / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info["data_path"] = template
    info_path.write_text(json.dumps(info))
    with pytest.raises(DatasetError, match=message):
        LeRobotDataset(demo_copy).data_path(0)


def test_unsupported_version_and_missing_dir(demo_copy, tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        LeRobotDataset(tmp_path / "nope")
    info_path = demo_copy / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info["codebase_version"] = "v1.6"
    info_path.write_text(json.dumps(info))
    with pytest.raises(DatasetError, match="v1.6"):
        LeRobotDataset(demo_copy)


def test_malformed_jsonl_names_the_line(demo_copy):
    path = demo_copy / "meta" / "episodes.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = '{"episode_index": 1,'
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"episodes.jsonl:2"):
        _ = LeRobotDataset(demo_copy).episodes
