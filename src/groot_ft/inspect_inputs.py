"""groot-ft inspect: exactly what the model sees for one sample, from the base model's config, processor files and
tokenizer alone (its weights are never read, so a 3B checkpoint takes seconds).

    groot-ft inspect --base-model nvidia/GR00T-N1.6-3B --dataset D --embodiment-tag gr1 --episode 0 --step 100 --out DIR

writes into ``DIR`` (replaced as a whole, never left half-written):

* ``inputs.safetensors``: the tensors the forward receives, in eval mode (centre crop, no augmentation), laid out as
  upstream's reference dump: ``input_ids`` and ``attention_mask`` (1, L); ``pixel_values`` (1, N_images, 3, H, W)
  (or the padded (N_images, 3, H, W) plus ``image_sizes`` when the images differ in size); ``state`` (T_s,
  max_state_dim); ``action`` and ``action_mask`` (action_horizon, max_action_dim); ``embodiment_id`` (1,);
* ``prompt.txt``: the decoded token sequence;
* ``images/NN_<camera>_t<offset>.png``: each image as it reaches the vision tower (after the processor's crop and
  resize and the collator's resize, before normalisation);
* ``token_ids.txt``: the token ids, one line;
* ``provenance.txt``: where the tokenizer, modality config, processor settings and statistics came from.

For a GR00T N1.7 base (``n1.7-tiny``, ``n1.7-3b``, or a ``Gr00tN1d7`` checkpoint), ``pixel_values`` are Qwen3-VL's
flattened patches (N_patches, 3 * 2 * 16 * 16) beside ``image_grid_thw`` (N_images, 3) and ``mm_token_type_ids``
(1, L), and ``provenance.txt`` also gives each image's geometry (camera frame -> processor crop -> smart_resize ->
patch grid -> tokens), the image-processor bounds and the chat-template check.

Statistics: ``--stats DIR`` (a ``groot-ft stats`` output: stats.json and, for relative actions, relative_stats.json),
else the dataset's own ``meta/stats.json`` (+ ``meta/relative_stats.json``), as upstream reads them.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from groot_ft.errors import UserError


class InspectError(UserError, ValueError):
    """A problem with inspect's inputs; the message names the file, key or episode."""


@dataclass
class Inspection:
    batch: dict[str, Any]
    prompt: str
    images: list[tuple[str, np.ndarray]]  # (file name, uint8 (H, W, 3))
    provenance: list[str]


def _statistics(dataset, stats_dir: Path | None, modality_cfg) -> tuple[dict[str, Any], str]:
    from groot_ft.processor_stats import statistics_from_stats_dir

    root = stats_dir if stats_dir is not None else dataset.root / "meta"
    if not (root / "stats.json").is_file():
        mapping = f" --modality-json {dataset.modality_json}" if dataset.modality_json_external else ""
        raise InspectError(f"{root / 'stats.json'}: no statistics; run `groot-ft stats {dataset.root}{mapping} --out "
                           "DIR` and pass --stats DIR")
    stats, files = statistics_from_stats_dir(root, dataset.modality, modality_cfg)
    return stats, "statistics: " + " + ".join(map(str, files))


def inspect_sample(base_model: str, dataset_root: str | os.PathLike, embodiment_tag: str, episode: int, step: int,
                   *, modality_config: str | None = None, stats_dir: str | os.PathLike | None = None,
                   tokenizer_path: str | None = None,
                   modality_json: str | os.PathLike | None = None) -> Inspection:
    from groot_ft.data.lerobot import LeRobotDataset
    from groot_ft.embodiment import normalize_tag
    from groot_ft.hub import resolve_base_model, resolve_tokenizer_dir
    from groot_ft.modality import load_modality_config

    tag = normalize_tag(embodiment_tag)
    # the user's own files first: a wrong dataset path or modality config fails before seconds of torch imports
    ds = LeRobotDataset(dataset_root, modality_json)
    user_cfg = load_modality_config(modality_config) if modality_config else None

    from groot_ft.model import (
        build_tokenizer,
        checkpoint_tokenizer,
        load_model_config,
        make_collator,
        preset,
    )
    from groot_ft.model.n17 import N17_PRESETS, n17_preset
    from groot_ft.model.n17.factory import n17_tokenizer
    from groot_ft.model.tokenizer import IMG_CONTEXT_TOKEN, load_tokenizer
    from groot_ft.run_processor import build_run_processor, resolve_modality_configs

    base_dir = resolve_base_model(base_model)
    tokenizer_dir = resolve_tokenizer_dir(tokenizer_path)
    tokenizer = None
    if tokenizer_dir is not None:
        tokenizer = load_tokenizer(tokenizer_dir)
        tokenizer.source = f"{tokenizer_dir} (tokenizer_path)"
    if base_dir is None and base_model in N17_PRESETS:
        config = n17_preset(base_model)
        tokenizer = n17_tokenizer(config, None, tokenizer)
    elif base_dir is None:
        config = preset(base_model)
        if tokenizer is None:
            tokenizer = build_tokenizer()
            tokenizer.source = f"byte tokenizer (preset {base_model!r})"
        config.image_token_index = tokenizer.convert_tokens_to_ids(IMG_CONTEXT_TOKEN)
    else:
        config = load_model_config(base_dir)
        if config.model_type == "Gr00tN1d7":
            tokenizer = n17_tokenizer(config, base_dir, tokenizer)
        else:
            tokenizer = checkpoint_tokenizer(base_dir, config, tokenizer)
    n17 = config.model_type == "Gr00tN1d7"
    provenance = [f"base model: {base_dir or 'preset ' + repr(base_model)} ({config.model_type})",
                  f"tokenizer: {tokenizer.source}"]

    provenance.append(ds.modality_source)
    # the config in force decides which dataset columns the statistics are cut from
    probe_cfg = resolve_modality_configs(base_dir, {tag: user_cfg})[tag]
    stats, stats_source = _statistics(ds, Path(stats_dir) if stats_dir else None, probe_cfg)
    processor, lines = build_run_processor(
        base_dir, {tag: user_cfg}, {tag: stats}, color_jitter_params=None, random_rotation_angle=None,
        override_pretraining_statistics=True, model_config=config,
        shortest_image_edge=None if base_dir is not None
        else getattr(config, "image_size", None) or config.shortest_image_edge,
    )
    provenance += lines + [stats_source]
    processor.eval()
    cfg = processor.modality_configs[tag]

    known_episodes = {e.index: e for e in ds.episodes}
    if episode not in known_episodes:
        raise InspectError(f"{ds.root}: no episode {episode} (it has {len(known_episodes)}: "
                           f"{min(known_episodes)}..{max(known_episodes)})")
    arrays = ds.load_episode(episode, cfg)
    if not 0 <= step < arrays.length:
        raise InspectError(f"{ds.root}: episode {episode} has {arrays.length} steps; --step {step} is outside")
    def rows(deltas) -> np.ndarray:  # offsets clamped to the episode, as the shards and open-loop eval do
        return np.clip(step + np.asarray(deltas), 0, arrays.length - 1)

    observation = {
        "video": {k: ds.read_episode_frames(episode, ds.video_original_key(k), rows(cfg.video.delta_indices))
                  for k in cfg.video.modality_keys},
        "state": {k: arrays.state[k][rows(cfg.state.delta_indices)] for k in cfg.state.modality_keys},
        "action": {k: arrays.action[k][rows(cfg.action.delta_indices)] for k in cfg.action.modality_keys},
        "language": {cfg.language.modality_keys[0]: arrays.language[step]},
    }
    sample = processor(observation, tag)

    collator = make_collator(tokenizer, config)
    if n17:
        provenance += [f"image bounds: {collator.image_processing.source}", f"chat template: "
                       f"{collator.chat_template_check}"]
    resized = collator.resized_images(sample["images"])
    batch = collator([sample])
    names = [f"{i:02d}_{cam}_t{d:+d}.png" for i, (d, cam) in
             enumerate((d, cam) for d in cfg.video.delta_indices for cam in cfg.video.modality_keys)]
    images = [(name, image.transpose(1, 2, 0)) for name, image in zip(names, resized)]
    if n17:
        # each image's way to the vision tower: the camera frame, the processor's crop, the Qwen3-VL resize
        for name, cam, processed, final in zip(names, [c for _ in cfg.video.delta_indices
                                                        for c in cfg.video.modality_keys], sample["images"], resized):
            raw = observation["video"][cam].shape[1:3]
            h, w = final.shape[1:]
            provenance.append(f"image {name}: {raw[0]}x{raw[1]} -> processor {processed.shape[1]}x"
                              f"{processed.shape[2]} -> smart_resize {h}x{w} -> patches {h // collator.patch_size}x"
                              f"{w // collator.patch_size} -> {collator.image_tokens(h, w)} tokens")
    prompt = tokenizer.decode(batch["input_ids"][0])
    return Inspection(batch=batch, prompt=prompt, images=images, provenance=provenance)


def write_inspection(inspection: Inspection, out_dir: str | os.PathLike) -> Path:
    """The files of the module docstring, written into a temporary sibling and renamed into place."""
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    batch = inspection.batch
    tensors = {
        "input_ids": batch["input_ids"],
        "attention_mask": batch["attention_mask"],
        "state": batch["state"][0],
        "embodiment_id": batch["embodiment_id"],
    }
    if "image_grid_thw" in batch:  # N1.7: Qwen3-VL's flattened patches, as the model's forward takes them
        for key in ("pixel_values", "image_grid_thw", "mm_token_type_ids"):
            tensors[key] = batch[key]
    elif "image_sizes" in batch:
        tensors["pixel_values"], tensors["image_sizes"] = batch["pixel_values"], batch["image_sizes"]
    else:
        tensors["pixel_values"] = batch["pixel_values"][None]
    if "action" in batch:
        tensors["action"], tensors["action_mask"] = batch["action"][0], batch["action_mask"][0]
    save_file({k: v.contiguous() if isinstance(v, torch.Tensor) else v for k, v in tensors.items()},
              str(tmp / "inputs.safetensors"))
    (tmp / "prompt.txt").write_text(inspection.prompt)
    (tmp / "token_ids.txt").write_text(" ".join(map(str, batch["input_ids"][0].tolist())) + "\n")
    (tmp / "provenance.txt").write_text("\n".join(inspection.provenance) + "\n")
    for name, image in inspection.images:
        Image.fromarray(np.ascontiguousarray(image)).save(tmp / "images" / name)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
