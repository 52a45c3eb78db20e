"""Vision-language backbone: SigLIP2 vision tower -> pixel unshuffle -> ``mlp1`` -> truncated Qwen3 LLM.

Mirrors upstream's ``EagleBackbone`` (``gr00t/model/modules/eagle_backbone.py``) around the vendored
``Eagle3_VLForConditionalGeneration`` (``gr00t/model/modules/nvidia/Eagle-Block2A-2B-v2/modeling_eagle3_vl.py``), built
from transformers classes and the nested configs instead of hub code. The module tree reproduces upstream's parameter
names, so an N1.6 checkpoint's ``backbone.model.*`` tensors load one to one:

    backbone.model.vision_model.vision_model.{embeddings,encoder,post_layernorm}.*   (vendored Siglip2VisionModel
                                                                                     wraps a Siglip2VisionTransformer)
    backbone.model.mlp1.{0,1,3}.*                                                    (LayerNorm, Linear, GELU, Linear)
    backbone.model.language_model.model.{embed_tokens,layers.N,norm}.*               (Qwen3ForCausalLM.model)

Upstream also holds a SigLIP2 attention-pooling ``head`` and the LLM's ``lm_head`` (tied to ``embed_tokens``); neither
is used to compute GR00T's features, so they are not built here and their checkpoint tensors are ignored on load.

Images arrive as normalised tensors ``pixel_values`` (N_images, 3, H, W), ordered as their ``<IMG_CONTEXT>`` blocks
appear in ``input_ids`` read row by row. Images of different sizes come zero-padded to the largest, with their true
``image_sizes`` (N_images, 2); each image yields (h / factor) x (w / factor) tokens, factor = patch x pixel-shuffle
(28 px for Eagle). The backbone turns them into SigLIP2's native input (flattened patches + ``pixel_attention_mask``
+ ``spatial_shapes``, which makes SigLIP2 resize its learned 16 x 16 position grid to each image's patch grid, as
upstream's vendored SigLIP2 does) itself, so the collator does not depend on the vision tower.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Qwen3Model, Siglip2VisionModel

from .configuration import Gr00tN1d6Config


def patchify(pixel_values: torch.Tensor, patch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, C, H, W) images -> SigLIP2 inputs: patches (N, h*w, p*p*C), attention mask (N, h*w), shapes (N, 2).

    Patch features are laid out (row, col, channel) within a patch and patches row-major, as upstream's
    ``convert_images_to_patches`` and SigLIP2's processor do.
    """
    n, c, height, width = pixel_values.shape
    h, w = height // patch_size, width // patch_size
    patches = pixel_values.reshape(n, c, h, patch_size, w, patch_size)
    patches = patches.permute(0, 2, 4, 3, 5, 1).reshape(n, h * w, patch_size * patch_size * c)
    mask = torch.ones(n, h * w, dtype=torch.long, device=pixel_values.device)
    shapes = torch.tensor([[h, w]], dtype=torch.long, device=pixel_values.device).expand(n, 2)
    return patches, mask, shapes


def pixel_shuffle(features: torch.Tensor, height: int, width: int, factor: int) -> torch.Tensor:
    """Space-to-depth as upstream's ``pixel_shuffle_back``: (N, h*w, C) -> (N, (h/f)*(w/f), C*f*f).

    Upstream runs ``F.pixel_unshuffle`` on (C, h, w) maps, so output channel ``c*f*f + i*f + j`` holds channel ``c`` of
    the patch at row offset ``i``, column offset ``j`` of its f x f block; output tokens are row-major. ``mlp1``'s
    weights depend on this order.
    """
    n, _, c = features.shape
    maps = features.transpose(1, 2).reshape(n, c, height, width)
    out = F.pixel_unshuffle(maps, downscale_factor=factor)  # (N, C*f*f, h/f, w/f)
    return out.flatten(2).transpose(1, 2)


def truncated_text_config(config: Gr00tN1d6Config):
    """Copy of ``text_config`` keeping only the first ``select_layer`` layers (upstream pops the others)."""
    text = copy.deepcopy(config.text_config)
    text.num_hidden_layers = config.select_layer
    if getattr(text, "layer_types", None) is not None:
        text.layer_types = list(text.layer_types[: config.select_layer])
    text.use_cache = False
    return text


def _cast_floating(value, dtype: torch.dtype):
    if torch.is_tensor(value):
        return value.to(dtype) if value.is_floating_point() and value.dtype != dtype else value
    if isinstance(value, (tuple, list)):
        return type(value)(_cast_floating(v, dtype) for v in value)
    return value


def _match_weight_dtype(module: nn.Module, args: tuple, kwargs: dict):
    """Forward pre-hook: cast floating inputs (hidden states, rotary cos/sin, float masks) to the module's weight dtype.

    With bf16 frozen layers below fp32 trainable ones (``apply_bf16_weights``) this is what makes the forward pass work
    without autocast; when dtypes already agree it changes nothing.
    """
    dtype = next(module.parameters()).dtype
    return _cast_floating(args, dtype), {k: _cast_floating(v, dtype) for k, v in kwargs.items()}


class SiglipVisionTower(nn.Module):
    """Holds the SigLIP2 encoder as ``vision_model``, as upstream's vendored ``Siglip2VisionModel`` nests it."""

    def __init__(self, config: Gr00tN1d6Config):
        super().__init__()
        vision_config = copy.deepcopy(config.vision_config)
        vision_config.vision_use_head = False  # pooling head: unused by GR00T (upstream builds it but never calls it)
        self.vision_model = Siglip2VisionModel(vision_config)

    def forward(self, pixel_values, pixel_attention_mask, spatial_shapes) -> torch.Tensor:
        return self.vision_model(
            pixel_values=pixel_values, pixel_attention_mask=pixel_attention_mask, spatial_shapes=spatial_shapes
        ).last_hidden_state


class TruncatedLanguageModel(nn.Module):
    """Holds the truncated Qwen3 decoder as ``model``, the path ``Qwen3ForCausalLM`` gives it (no ``lm_head``)."""

    def __init__(self, config: Gr00tN1d6Config):
        super().__init__()
        self.model = Qwen3Model(truncated_text_config(config))
        for layer in self.model.layers:
            layer.register_forward_pre_hook(_match_weight_dtype, with_kwargs=True)

    @property
    def layers(self) -> nn.ModuleList:
        return self.model.layers

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    def forward(self, inputs_embeds, attention_mask, position_ids) -> torch.Tensor:
        return self.model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state


class Gr00tVLM(nn.Module):
    """The VLM proper: ``vision_model``, ``mlp1`` connector and the truncated ``language_model``."""

    def __init__(self, config: Gr00tN1d6Config):
        super().__init__()
        self.patch_size = config.vision_config.patch_size
        self.shuffle = round(1.0 / config.downsample_ratio)
        self.image_token_index = config.image_token_index
        self.image_factor = config.image_factor

        self.vision_model = SiglipVisionTower(config)
        vit_dim = config.vision_config.hidden_size * self.shuffle**2
        llm_dim = config.text_config.hidden_size
        # Upstream's 2-layer MLP connector (mlp_connector_layers=2): LayerNorm -> Linear -> GELU (erf) -> Linear.
        self.mlp1 = nn.Sequential(
            nn.LayerNorm(vit_dim), nn.Linear(vit_dim, llm_dim), nn.GELU(), nn.Linear(llm_dim, llm_dim)
        )
        self.language_model = TruncatedLanguageModel(config)

    def extract_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) images of one size -> (N, (H/f)*(W/f), llm_dim): last SigLIP2 layer (+ post-LN), unshuffle,
        ``mlp1``."""
        dtype = self.vision_model.vision_model.embeddings.patch_embedding.weight.dtype
        patches, mask, shapes = patchify(pixel_values.to(dtype), self.patch_size)
        hidden = self.vision_model(patches, mask, shapes)
        h, w = int(shapes[0, 0]), int(shapes[0, 1])
        shuffled = pixel_shuffle(hidden, h, w, self.shuffle)
        return self.mlp1(shuffled.to(self.mlp1[1].weight.dtype))

    def image_features(self, pixel_values: torch.Tensor, image_sizes: torch.Tensor | None) -> torch.Tensor:
        """Features of every image token, image after image in input order: (sum of tokens, llm_dim). Images of one
        size go through the tower together."""
        if image_sizes is None:
            return self.extract_image_features(pixel_values).flatten(0, 1)
        sizes = [tuple(int(v) for v in hw) for hw in image_sizes.tolist()]
        out: list[torch.Tensor | None] = [None] * len(sizes)
        for h, w in dict.fromkeys(sizes):
            index = [i for i, size in enumerate(sizes) if size == (h, w)]
            features = self.extract_image_features(pixel_values[index, :, :h, :w])
            for i, f in zip(index, features):
                out[i] = f
        return torch.cat(out)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor | None,
        image_sizes: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        image_mask = input_ids == self.image_token_index
        embeds = self.language_model.get_input_embeddings()(input_ids)
        num_slots = int(image_mask.sum())
        if pixel_values is None or pixel_values.shape[0] == 0:
            expected = 0
        elif image_sizes is None:
            expected = pixel_values.shape[0] * (pixel_values.shape[-2] // self.image_factor) * (
                pixel_values.shape[-1] // self.image_factor)
        else:
            expected = int(((image_sizes[:, 0] // self.image_factor) * (image_sizes[:, 1] // self.image_factor)).sum())
        if num_slots != expected:
            raise ValueError(
                f"input_ids hold {num_slots} <IMG_CONTEXT> tokens but the images give {expected} "
                f"(one per {self.image_factor}x{self.image_factor} pixels)"
            )
        if expected:
            features = self.image_features(pixel_values, image_sizes).to(embeds.dtype)
            # masked_scatter fills the masked positions in row-major order: image i of the flat list goes to the
            # i-th <IMG_CONTEXT> block, which is why the collator orders pixel_values sample by sample.
            embeds = embeds.masked_scatter(image_mask[..., None], features)
        # Positions count real tokens only. Upstream passes no position_ids (positions 0..L-1 including left padding);
        # rotary attention depends only on position differences, so both give the same features for real tokens.
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp_(min=0)
        hidden = self.language_model(embeds, attention_mask, position_ids)
        return hidden, image_mask


class EagleBackbone(nn.Module):
    """Upstream's wrapper name; holds the VLM as ``model`` so parameter paths read ``backbone.model.*``."""

    def __init__(self, config: Gr00tN1d6Config):
        super().__init__()
        self.model = Gr00tVLM(config)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        features, image_mask = self.model(input_ids, attention_mask, pixel_values, image_sizes)
        return {
            "backbone_features": features,  # (B, L, backbone_embedding_dim)
            "backbone_attention_mask": attention_mask == 1,  # (B, L)
            "image_mask": image_mask,  # (B, L) bool
        }
