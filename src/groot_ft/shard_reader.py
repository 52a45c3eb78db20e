"""The read side of a shard directory, which the training loader uses: its manifest (:class:`ShardSet`), one shard's
samples (:class:`ShardReader`) and the JPEG decoder for their frames.

Split out of :mod:`groot_ft.shards` (which builds the shards and re-exports these names); it needs neither PyAV nor
the dataset reader.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import simplejpeg
from PIL import Image

from groot_ft.errors import UserError, read_json_file
from groot_ft.modality import EmbodimentModalityConfig

SHARD_FORMAT_VERSION = 1


def decode_jpeg(data: bytes) -> np.ndarray:
    """RGB ``(H, W, 3)`` uint8 array of one JPEG image.

    libjpeg-turbo through simplejpeg: the same pixels as PIL (the same library underneath, accurate IDCT) in a
    third of PIL's time and half that of FFmpeg's MJPEG decoder plus an RGB conversion on small frames
    (docs/benchmarks.md), which matters because the loader decodes every camera of every sample. It keeps no
    state, so threads and forked DataLoader workers need nothing of their own. Anything it rejects goes through
    PIL, so any JPEG PIL reads still reads.
    """
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB")
    except ValueError:
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@dataclass(frozen=True)
class ShardSet:
    """What the loader needs to know about a shard directory (read from its manifest.json)."""

    root: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, root: str | Path) -> ShardSet:
        root = Path(root)
        manifest = read_json_file(root / "manifest.json", "the shard manifest (written last by `groot-ft shards`)")
        found = manifest.get("format_version") if isinstance(manifest, dict) else None
        if found != SHARD_FORMAT_VERSION:
            raise UserError(f"{root}/manifest.json: shard format {found} is not {SHARD_FORMAT_VERSION}; rebuild the "
                            f"shards")
        return cls(root, manifest)

    @property
    def shard_paths(self) -> list[Path]:
        return [self.root / s["file"] for s in self.manifest["shards"]]

    @property
    def shard_lengths(self) -> list[int]:
        return [int(s["samples"]) for s in self.manifest["shards"]]

    @property
    def dims(self) -> dict[str, int]:
        return self.manifest["dims"]


class ShardReader:
    """Random access to one shard's samples, each an unbatched observation+action dict in upstream's layout.

    Columns are turned into numpy views once per shard instead of converting every row to Python objects, which
    halves the per-sample cost outside the processor (docs/benchmarks.md).
    """

    def __init__(self, table: pa.Table, cfg: EmbodimentModalityConfig, dims: dict[str, int]):
        self.cfg = cfg
        self.num_rows = table.num_rows
        self._video = {}
        for key in cfg.video.modality_keys:
            col = table.column(f"video.{key}").combine_chunks()
            # the JPEG blobs as Python bytes once per shard, not one Arrow scalar per frame per sample
            self._video[key] = (col.offsets.to_numpy(), col.values.to_pylist())
        self._groups = {}
        for modality in ("state", "action"):
            t = len(cfg[modality].delta_indices)
            for key in cfg[modality].modality_keys:
                col = table.column(f"{modality}.{key}").combine_chunks()
                values = col.flatten().to_numpy(zero_copy_only=False)
                self._groups[(modality, key)] = values.reshape(len(col), t, dims[f"{modality}.{key}"])
        self._language = table.column("language").to_pylist()

    def __len__(self) -> int:
        return self.num_rows

    def sample(self, row: int) -> dict[str, Any]:
        step: dict[str, Any] = {"video": {}, "state": {}, "action": {}}
        for key, (offsets, blobs) in self._video.items():
            first, end = offsets[row], offsets[row + 1]
            if end - first == 1:  # one frame a camera, the usual case: no stack copy
                step["video"][key] = decode_jpeg(blobs[first])[None]
            else:
                step["video"][key] = np.stack([decode_jpeg(blobs[j]) for j in range(first, end)])
        for (modality, key), values in self._groups.items():
            step[modality][key] = values[row].copy()  # the processor may write into its input
        step["language"] = {self.cfg.language.modality_keys[0]: self._language[row]}
        return step
