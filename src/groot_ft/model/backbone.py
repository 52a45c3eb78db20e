"""Vision-language backbone: SigLIP2 vision tower -> pixel shuffle -> ``mlp1`` -> truncated Qwen3 LLM.

Mirrors upstream's ``EagleBackbone`` (module paths ``backbone.model.vision_model``, ``backbone.model.mlp1``,
``backbone.model.language_model``), built from transformers classes and the nested configs instead of a hub checkpoint.

Images arrive as normalised square tensors ``pixel_values`` (N_images, 3, S, S), ordered as their ``<IMG_CONTEXT>``
blocks appear in ``input_ids`` read row by row. The backbone turns them into SigLIP2's native input (flattened
patches + ``pixel_attention_mask`` + ``spatial_shapes``) itself, so the collator does not depend on the vision tower.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers import Qwen3Model, Siglip2VisionModel

from .configuration import Gr00tN1d6Config


def patchify(pixel_values: torch.Tensor, patch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, C, H, W) images -> SigLIP2 inputs: patches (N, h*w, p*p*C), attention mask (N, h*w), shapes (N, 2).

    Patch features are laid out (row, col, channel) within a patch and patches row-major, as SigLIP2's processor does.
    """
    n, c, height, width = pixel_values.shape
    h, w = height // patch_size, width // patch_size
    patches = pixel_values.reshape(n, c, h, patch_size, w, patch_size)
    patches = patches.permute(0, 2, 4, 3, 5, 1).reshape(n, h * w, patch_size * patch_size * c)
    mask = torch.ones(n, h * w, dtype=torch.long, device=pixel_values.device)
    shapes = torch.tensor([[h, w]], dtype=torch.long, device=pixel_values.device).expand(n, 2)
    return patches, mask, shapes


def pixel_shuffle(features: torch.Tensor, height: int, width: int, factor: int) -> torch.Tensor:
    """Space-to-depth: (N, h*w, C) -> (N, (h/f)*(w/f), C*f*f); each output token stacks an f x f patch block."""
    n, _, c = features.shape
    x = features.reshape(n, height // factor, factor, width // factor, factor, c)
    x = x.permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, (height // factor) * (width // factor), factor * factor * c)


def truncated_text_config(config: Gr00tN1d6Config):
    """Copy of ``text_config`` keeping only the first ``select_layer`` layers (upstream pops the others)."""
    text = copy.deepcopy(config.text_config)
    text.num_hidden_layers = config.select_layer
    if getattr(text, "layer_types", None) is not None:
        text.layer_types = list(text.layer_types[: config.select_layer])
    text.use_cache = False
    return text


class Gr00tVLM(nn.Module):
    """The VLM proper: ``vision_model``, ``mlp1`` connector and the truncated ``language_model``."""

    def __init__(self, config: Gr00tN1d6Config):
        super().__init__()
        self.patch_size = config.vision_config.patch_size
        self.shuffle = round(1.0 / config.downsample_ratio)
        self.image_token_index = config.image_token_index
        self.num_image_tokens = config.num_image_tokens

        self.vision_model = Siglip2VisionModel(config.vision_config)
        vit_dim = config.vision_config.hidden_size * self.shuffle**2
        llm_dim = config.text_config.hidden_size
        # Upstream's 2-layer MLP connector: LayerNorm -> Linear -> GELU -> Linear.
        self.mlp1 = nn.Sequential(
            nn.LayerNorm(vit_dim), nn.Linear(vit_dim, llm_dim), nn.GELU(), nn.Linear(llm_dim, llm_dim)
        )
        self.language_model = Qwen3Model(truncated_text_config(config))

    def extract_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) -> (N, num_image_tokens, llm_dim)."""
        dtype = self.vision_model.embeddings.patch_embedding.weight.dtype
        patches, mask, shapes = patchify(pixel_values.to(dtype), self.patch_size)
        hidden = self.vision_model(
            pixel_values=patches, pixel_attention_mask=mask, spatial_shapes=shapes
        ).last_hidden_state
        h, w = int(shapes[0, 0]), int(shapes[0, 1])
        return self.mlp1(pixel_shuffle(hidden, h, w, self.shuffle))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        image_mask = input_ids == self.image_token_index
        embeds = self.language_model.get_input_embeddings()(input_ids)
        num_slots = int(image_mask.sum())
        num_images = 0 if pixel_values is None else pixel_values.shape[0]
        if num_slots != num_images * self.num_image_tokens:
            raise ValueError(
                f"input_ids hold {num_slots} <IMG_CONTEXT> tokens but {num_images} images x "
                f"{self.num_image_tokens} tokens were given"
            )
        if num_images:
            features = self.extract_image_features(pixel_values).to(embeds.dtype)
            # masked_scatter fills the masked positions in row-major order: image i of the flat list goes to the
            # i-th <IMG_CONTEXT> block, which is why the collator orders pixel_values sample by sample.
            embeds = embeds.masked_scatter(image_mask[..., None], features.reshape(-1, features.shape[-1]))
        # Positions count real tokens only, so left padding does not shift a sample's rotary positions.
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp_(min=0)
        hidden = self.language_model(
            inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        return hidden, image_mask


class EagleBackbone(nn.Module):
    """Upstream's wrapper name; holds the VLM as ``model`` so parameter paths read ``backbone.model.*``."""

    def __init__(self, config: Gr00tN1d6Config):
        super().__init__()
        self.model = Gr00tVLM(config)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        features, image_mask = self.model(input_ids, attention_mask, pixel_values)
        return {
            "backbone_features": features,  # (B, L, backbone_embedding_dim)
            "backbone_attention_mask": attention_mask.bool(),  # (B, L)
            "image_mask": image_mask,  # (B, L) bool
        }
