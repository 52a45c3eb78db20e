"""LeRobot 0.6.1's GR00T N1.7 on inputs and weights written by ``test_n17_lerobot_parity.py``.

Runs in LeRobot's own environment (see ``../shared/tools/lerobot-0.6.1``), never in ours: it imports nothing from
groot_ft. usage: ``<lerobot python> lerobot_n17_runner.py {model,images} WORK_DIR TOOLS_DIR``.

``model``: ``WORK_DIR`` holds

- ``backbone/config.json``: the tiny Qwen3-VL config LeRobot builds its backbone from (``model_name``);
- ``lerobot_config.json``: ``GR00TN17Config`` fields (LeRobot's names);
- ``weights.safetensors``: every tensor under upstream's names (float32, no ``lm_head``);
- ``inputs.safetensors``: the batch, the fixed flow-matching noise and time, the fixed sampling noise, and the
  previous chunk for real-time chunking; ``rtc_options.json``.

It writes ``lerobot_outputs.safetensors``, the gradient of that loss for every parameter
(``lerobot_grads.safetensors``) and ``lerobot_report.json`` (missing / unexpected keys on load, versions).
Noise and time are drawn inside LeRobot's forward and ``get_action``; they are replaced by the fixed tensors by
patching ``torch.randn`` and ``GR00TN17ActionHead.sample_time`` around those calls only.

``images``: ``WORK_DIR`` holds ``images_inputs.safetensors`` (groups of uint8 frames ``frames_<i>``, (N, H, W, 3))
and ``images_config.json`` (the crop settings and the Qwen2-VL image-processor settings); for each group, without
and with ``letter_box_transform``, it writes LeRobot's eval-time crop (``_transform_n1_7_image_for_vlm_albumentations``,
cv2 INTER_AREA, what LeRobot calls bit-exact to upstream's albumentations path) and what transformers'
``Qwen2VLImageProcessor`` (its default, the torchvision backend) makes of it, to ``lerobot_images.safetensors``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from unittest import mock


def images(work: Path, tools: Path) -> None:
    sys.path.insert(0, str(tools))
    import tvshim  # noqa: F401
    import numpy as np
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import Qwen2VLImageProcessor

    from lerobot.policies.groot.processor_groot import _transform_n1_7_image_for_vlm_albumentations

    settings = json.loads((work / "images_config.json").read_text())
    processor = Qwen2VLImageProcessor(
        patch_size=settings["patch_size"], temporal_patch_size=settings["temporal_patch_size"],
        merge_size=settings["merge_size"], min_pixels=settings["min_pixels"], max_pixels=settings["max_pixels"],
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    out = {}
    for name, frames in load_file(work / "images_inputs.safetensors").items():
        for letter_box, suffix in ((False, ""), (True, "_letterbox")):
            group = name.removeprefix("frames_") + suffix
            cropped = [_transform_n1_7_image_for_vlm_albumentations(
                frame, image_crop_size=None, image_target_size=[settings["shortest_image_edge"]] * 2,
                shortest_image_edge=settings["shortest_image_edge"], crop_fraction=settings["crop_fraction"],
                letter_box_transform=letter_box) for frame in frames.numpy()]
            out[f"cropped_{group}"] = torch.from_numpy(np.stack(cropped))
            encoded = processor(images=[torch.from_numpy(c).permute(2, 0, 1).contiguous() for c in cropped],
                                return_tensors="pt")
            out[f"pixel_values_{group}"] = encoded["pixel_values"]
            out[f"grid_{group}"] = encoded["image_grid_thw"]
    save_file(out, work / "lerobot_images.safetensors")
    (work / "lerobot_images.json").write_text(json.dumps(
        {"image_processor": [c.__name__ for c in type(processor).__mro__[:2]]}))


def main(work: Path, tools: Path) -> None:
    sys.path.insert(0, str(tools))
    import tvshim  # noqa: F401  (the PyPI torchvision wheel on CPU torch; before lerobot)
    import torch
    import transformers
    from safetensors.torch import load_file, save_file
    from transformers.feature_extraction_utils import BatchFeature

    import lerobot
    from lerobot.policies.groot.groot_n1_7 import GR00TN17, GR00TN17Config

    torch.set_grad_enabled(False)
    fields = json.loads((work / "lerobot_config.json").read_text())
    config = GR00TN17Config(**fields, model_name=str(work / "backbone"))
    model = GR00TN17(config, load_backbone_weights=False).float().eval()
    missing, unexpected = model.load_state_dict(load_file(work / "weights.safetensors"), strict=False)
    x = load_file(work / "inputs.safetensors")
    options = json.loads((work / "rtc_options.json").read_text())

    def backbone_output() -> BatchFeature:
        # The action head's process_backbone_output rewrites the features in place: a fresh pass each time.
        return model.backbone(BatchFeature(data={k: x[k] for k in ("input_ids", "attention_mask", "pixel_values",
                                                                   "image_grid_thw")}))

    def action_input(**extra) -> BatchFeature:
        data = {k: x[k] for k in ("state", "embodiment_id", "action", "action_mask")}
        data.update(extra)
        return BatchFeature(data=data)

    out = {}
    raw = backbone_output()
    out["backbone_features"] = raw["backbone_features"].clone()
    out["image_mask"] = raw["image_mask"].to(torch.uint8)
    encoded = model.action_head._encode_features(backbone_output(), action_input())
    out["vl_features"] = encoded["backbone_features"]
    out["state_features"] = encoded["state_features"]

    # Training loss at the fixed noise and time; the decoder's output gives the velocity prediction. Every parameter
    # is made trainable, so the backward pass reaches the whole network (the vision tower and LLM included).
    for param in model.parameters():
        param.requires_grad_(True)
    decoded = []
    hook = model.action_head.action_decoder.register_forward_hook(lambda _m, _i, o: decoded.append(o))
    with torch.enable_grad(), mock.patch.object(torch, "randn", lambda *a, **k: x["fm_noise"].clone()), \
            mock.patch.object(type(model.action_head), "sample_time", lambda *a, **k: x["fm_time"].clone()):
        loss_out = model.action_head(backbone_output(), action_input())
        loss_out["loss"].backward()
    hook.remove()
    out["loss"] = loss_out["loss"].detach().reshape(1)
    out["action_loss"] = loss_out["action_loss"].detach()
    out["velocity"] = decoded[0][:, -x["action"].shape[1]:].detach()
    save_file({name: p.grad.contiguous() for name, p in model.named_parameters() if p.grad is not None},
              work / "lerobot_grads.safetensors")

    # Sampling from the fixed initial noise, without and with real-time chunking.
    no_action = {k: x[k] for k in ("state", "embodiment_id")}
    with mock.patch.object(torch, "randn", lambda *a, **k: x["sample_noise"].clone()):
        out["action_pred"] = model.action_head.get_action(backbone_output(), BatchFeature(data=no_action))[
            "action_pred"]
        rtc_input = BatchFeature(data={**no_action, "action": x["previous_action"]})
        out["action_pred_rtc"] = model.action_head.get_action(backbone_output(), rtc_input, options)["action_pred"]

    save_file({k: v.contiguous() for k, v in out.items()}, work / "lerobot_outputs.safetensors")
    (work / "lerobot_report.json").write_text(json.dumps({
        "missing_keys": sorted(missing),
        "unexpected_keys": sorted(unexpected),
        "lerobot": lerobot.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "backbone_attn_implementation": model.backbone.model.config._attn_implementation,
        "parameters": sum(p.numel() for p in model.parameters()),
    }, indent=1))


if __name__ == "__main__":
    {"model": main, "images": images}[sys.argv[1]](Path(sys.argv[2]), Path(sys.argv[3]))
