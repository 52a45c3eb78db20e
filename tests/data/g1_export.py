"""A dataset shaped like a plain LeRobot v2.1 export of a Unitree G1 (two 7-joint arms, two 6-joint Inspire hands):
26-D ``observation.state``/``action`` whose ``names`` Unitree's exporter stores as a nested list
``[["kLeftShoulderPitch", ...]]``, and no ``meta/modality.json``.

It is made from a copy of the demo dataset (:func:`groot_ft.data.demo.write_demo_dataset`): the 4-D vectors are
spread over 26 joints, and ``meta/info.json`` and ``meta/episodes_stats.jsonl`` are rewritten to match. The source
dataset is only read.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

#: Unitree's G1 + Inspire hands joint order (arms first, then hands), as its LeRobot exports name them
_ARM = ("ShoulderPitch", "ShoulderRoll", "ShoulderYaw", "Elbow", "WristRoll", "WristPitch", "WristYaw")
_HAND = ("Pinky", "Ring", "Middle", "Index", "ThumbBend", "ThumbRotation")
G1_JOINTS = [f"k{side}{joint}" for side in ("Left", "Right") for joint in _ARM] + [
    f"k{side}Hand{finger}" for side in ("Left", "Right") for finger in _HAND
]
DIM = len(G1_JOINTS)
G1_GROUPS = {"left_arm": (0, 7), "right_arm": (7, 14), "left_hand": (14, 20), "right_hand": (20, 26)}

#: every form LeRobot writers store per-element names in, for the G1 joints (None: no names)
NAMES_FORMS: dict[str, Any] = {
    "flat": list(G1_JOINTS),
    "nested": [list(G1_JOINTS)],
    "nested-parts": [G1_JOINTS[:14], G1_JOINTS[14:]],
    "motors": {"motors": list(G1_JOINTS)},
    "categories": {"arms": G1_JOINTS[:14], "hands": G1_JOINTS[14:]},
    "name-index": {name: i for i, name in reversed(list(enumerate(G1_JOINTS)))},
    "null": None,
}


def _spread(values: np.ndarray) -> np.ndarray:
    """(T, 4) demo values -> (T, 26) joint values, each joint a distinct affine copy of one demo dimension."""
    j = np.arange(DIM)
    return (values[:, j % values.shape[1]] * (1.0 + 0.05 * j) + 0.01 * j).astype(np.float32)


def _fixed_list(matrix: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), type=pa.float32()), matrix.shape[1])


def _stats(matrix: np.ndarray) -> dict[str, list]:
    v = matrix.astype(np.float64)
    return {
        "min": v.min(axis=0).tolist(),
        "max": v.max(axis=0).tolist(),
        "mean": v.mean(axis=0).tolist(),
        "std": v.std(axis=0).tolist(),
        "count": [int(v.shape[0])],
    }


def write_g1_export(demo: Path, out: Path, names: Any = NAMES_FORMS["nested"]) -> Path:
    """Copy the v2.1 demo dataset ``demo`` to ``out`` as a G1-shaped export whose state/action ``names`` are
    ``names``; returns ``out``."""
    shutil.copytree(demo, out)
    (out / "meta" / "modality.json").unlink()
    info_path = out / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info["robot_type"] = "Unitree_G1_Inspire"
    for key in ("observation.state", "action"):
        info["features"][key] = {"dtype": "float32", "shape": [DIM], "names": names}
    info_path.write_text(json.dumps(info, indent=4))

    stats_path = out / "meta" / "episodes_stats.jsonl"
    rows = [json.loads(line) for line in stats_path.read_text().splitlines() if line.strip()]
    for row in rows:
        path = out / info["data_path"].format(episode_chunk=0, episode_index=row["episode_index"])
        table = pq.read_table(path)
        for key in ("observation.state", "action"):
            column = table.column(key).combine_chunks()
            matrix = _spread(column.flatten().to_numpy().reshape(len(column), -1))
            table = table.set_column(table.schema.get_field_index(key), key, _fixed_list(matrix))
            row["stats"][key] = _stats(matrix)
        pq.write_table(table, path)
    stats_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out
