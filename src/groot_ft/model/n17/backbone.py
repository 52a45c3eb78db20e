"""The N1.7 vision-language backbone: transformers' own Qwen3-VL (``Qwen3VLModel``), truncated to ``select_layer``.

Upstream's ``Qwen3Backbone`` (``gr00t/model/modules/qwen3_backbone.py``) loads ``Qwen3VLForConditionalGeneration`` for
``nvidia/Cosmos-Reason2-2B``, pops every LLM layer above ``select_layer`` and reads the output of the last kept
decoder layer, *before* the final RMSNorm. Built here from the config (no hub access, no remote code) with the same
module paths, so a released checkpoint's ``backbone.*`` tensors load one to one:

    backbone.model.model.visual.{patch_embed.proj, pos_embed, blocks.N, merger, deepstack_merger_list.K}.*
    backbone.model.model.language_model.{embed_tokens, layers.N (N < select_layer), norm}.*

The LM head (``backbone.model.lm_head``, tied to ``embed_tokens``) is not built: GR00T never reads logits. The final
``norm`` is built (it is in the checkpoint and in the released parameter count) but does not touch the features.

Inputs are Qwen3-VL's: ``pixel_values`` as flattened patches ``(sum of t*h*w, C*temporal_patch*patch*patch)`` with
``image_grid_thw`` ``(N_images, 3)`` in patches (:func:`images_to_patches` makes them from image tensors), images
placed at the ``image_token_id`` positions of ``input_ids`` in row-major order. Deepstack (vision features of blocks
``deepstack_visual_indexes`` added to the image positions after the first LLM layers) and the interleaved
multimodal rotary positions are transformers' own code paths.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers import Qwen3VLConfig, Qwen3VLModel

from .configuration import Gr00tN1d7Config


def truncated_vlm_config(config: Gr00tN1d7Config) -> Qwen3VLConfig:
    """Copy of ``vlm_config`` whose LLM has only the first ``select_layer`` layers (upstream pops the rest)."""
    backbone = copy.deepcopy(config.vlm_config)
    text = backbone.text_config
    text.num_hidden_layers = config.select_layer
    if getattr(text, "layer_types", None) is not None:
        text.layer_types = list(text.layer_types[: config.select_layer])
    text.use_cache = False
    return backbone


def images_to_patches(
    pixel_values: torch.Tensor, patch_size: int, temporal_patch_size: int, merge_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised still images (N, C, H, W) of one size -> Qwen3-VL's ``(pixel_values, image_grid_thw)``.

    Each still image is repeated ``temporal_patch_size`` times (one temporal patch), as Qwen2-VL's image processor
    does, and patches are ordered merge-window by merge-window (``merge_size`` x ``merge_size`` neighbours
    consecutive) with features laid out (channel, time, row, column): the layout the patch-embedding Conv3d and the
    patch merger expect. H and W must be multiples of ``patch_size * merge_size``.
    """
    n, c, height, width = pixel_values.shape
    step = patch_size * merge_size
    if height % step or width % step:
        raise ValueError(f"image of {height}x{width} is not a multiple of {step} px (patch x spatial merge)")
    gh, gw = height // patch_size, width // patch_size
    frames = pixel_values[:, None].expand(n, temporal_patch_size, c, height, width)
    x = frames.reshape(n, temporal_patch_size, c, gh // merge_size, merge_size, patch_size, gw // merge_size,
                       merge_size, patch_size)
    # -> (n, gh/m, gw/m, m, m, c, t, p, p)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    patches = x.reshape(n * gh * gw, c * temporal_patch_size * patch_size * patch_size)
    grid = torch.tensor([[1, gh, gw]], dtype=torch.long, device=pixel_values.device).expand(n, 3)
    return patches, grid


class Qwen3VLWithoutHead(nn.Module):
    """Holds ``Qwen3VLModel`` as ``model``: the path ``Qwen3VLForConditionalGeneration`` gives it, minus ``lm_head``."""

    def __init__(self, config: Gr00tN1d7Config):
        super().__init__()
        self.model = Qwen3VLModel(truncated_vlm_config(config))

    @property
    def visual(self) -> nn.Module:
        return self.model.visual

    @property
    def language_model(self) -> nn.Module:
        return self.model.language_model


class Qwen3VLBackbone(nn.Module):
    """Upstream's ``Qwen3Backbone``: holds the VLM as ``model`` so parameter paths read ``backbone.model.model.*``."""

    def __init__(self, config: Gr00tN1d7Config):
        super().__init__()
        self.image_token_id = config.vlm_config.image_token_id
        self.model = Qwen3VLWithoutHead(config)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        image_grid_thw: torch.Tensor | None = None,
        mm_token_type_ids: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        image_mask = input_ids == self.image_token_id
        if mm_token_type_ids is not None and not torch.equal(mm_token_type_ids.bool(), image_mask):
            # the collator's token types must mark exactly the image tokens the features are written into
            raise ValueError("mm_token_type_ids must be 1 exactly on the image tokens of input_ids")
        vlm = self.model.model
        kwargs = {}
        if pixel_values is not None and pixel_values.shape[0] > 0:
            if image_grid_thw is None:
                raise ValueError("pixel_values need image_grid_thw (patches per image: t, h, w)")
            # transformers 5 builds the multimodal rotary positions from these token types (0 text, 1 image);
            # upstream's transformers 4.57 derived them from input_ids itself.
            kwargs = {
                "pixel_values": pixel_values,
                "image_grid_thw": image_grid_thw,
                "mm_token_type_ids": image_mask.to(torch.int32),
            }
        elif bool(image_mask.any()):
            raise ValueError(f"input_ids hold {int(image_mask.sum())} image tokens but no pixel_values were given")

        # The features are the last kept decoder layer's output before the final norm (what upstream's
        # hidden_states[-1] was under transformers 4.57); transformers 5 reports the normed tensor there instead,
        # so read the layer's output directly.
        captured: list[torch.Tensor] = []

        def keep_output(_module, _inputs, output):
            captured.append(output[0] if isinstance(output, (tuple, list)) else output)

        handle = vlm.language_model.layers[-1].register_forward_hook(keep_output)
        try:
            vlm(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs)
        finally:
            handle.remove()
        features = captured[0]
        return {
            "backbone_features": features,  # (B, L, backbone_embedding_dim)
            "backbone_attention_mask": attention_mask == 1,  # (B, L)
            "image_mask": image_mask,  # (B, L) bool
        }
