"""AlternateVLDiT: the diffusion transformer of the N1.6 action head.

Blocks alternate between cross-attention to the vision-language tokens (even indices) and self-attention over the
state + action tokens (odd indices). Cross-attention blocks look either at the text (non-image) tokens or at the image
tokens: cross block number k attends to text when ``k % attend_text_every_n_blocks == 0`` (with the default 2 and
interleaving: block 0 text, 2 image, 4 text, ...). Every block is conditioned on the flow-matching timestep through
adaptive LayerNorm (scale/shift predicted from the timestep embedding).

Module and parameter names follow upstream (``transformer_blocks.N.{norm1,attn1,norm3,ff}``, ``timestep_encoder``,
``proj_out_1``, ``proj_out_2``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from .layers import TimestepEncoder


class AdaLayerNorm(nn.Module):
    """LayerNorm without affine weights, modulated by ``(1 + scale) * x + shift`` predicted from the timestep."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.linear = nn.Linear(dim, 2 * dim)
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(F.silu(temb)).chunk(2, dim=-1)
        return self.norm(x) * (1 + scale[:, None]) + shift[:, None]


class Attention(nn.Module):
    """Multi-head attention; self-attention when ``context`` is None, cross-attention otherwise."""

    def __init__(self, query_dim: int, heads: int, head_dim: int, kv_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.head_dim = head_dim
        self.dropout = dropout
        self.to_q = nn.Linear(query_dim, inner)
        self.to_k = nn.Linear(kv_dim or query_dim, inner)
        self.to_v = nn.Linear(kv_dim or query_dim, inner)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim), nn.Dropout(dropout)])

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)  # (B, H, S, Dh)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        kv = x if context is None else context
        q, k, v = self._split(self.to_q(x)), self._split(self.to_k(kv)), self._split(self.to_v(kv))
        attn_mask, has_keys = None, None
        if context_mask is not None:
            # A sample with no valid key (e.g. no image tokens) would give NaNs; let it attend everywhere and zero
            # its output instead, so such a sample simply gets no update from this block.
            has_keys = context_mask.any(dim=-1)
            attn_mask = (context_mask | ~has_keys[:, None])[:, None, None, :]
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        out = out.transpose(1, 2).flatten(2)
        if has_keys is not None:
            out = out * has_keys[:, None, None].to(out.dtype)
        return self.to_out[1](self.to_out[0](out))


class GELUProjection(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0, final_dropout: bool = True):
        super().__init__()
        layers: list[nn.Module] = [GELUProjection(dim, dim * mult), nn.Dropout(dropout), nn.Linear(dim * mult, dim)]
        if final_dropout:
            layers.append(nn.Dropout(dropout))
        self.net = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class BasicTransformerBlock(GradientCheckpointingLayer):
    """AdaLN -> attention (self or cross) -> residual -> LayerNorm -> FF -> residual.

    A ``GradientCheckpointingLayer`` so ``model.gradient_checkpointing_enable()`` recomputes it in the backward pass.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        head_dim: int,
        cross_attention_dim: int | None,
        dropout: float,
        final_dropout: bool,
    ):
        super().__init__()
        self.is_cross_attention = cross_attention_dim is not None
        self.norm1 = AdaLayerNorm(dim)
        self.attn1 = Attention(dim, heads, head_dim, kv_dim=cross_attention_dim, dropout=dropout)
        self.norm3 = nn.LayerNorm(dim, eps=1e-5, elementwise_affine=False)
        self.ff = FeedForward(dim, dropout=dropout, final_dropout=final_dropout)

    def forward(
        self,
        hidden_states: torch.Tensor,
        temb: torch.Tensor,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        hidden_states = hidden_states + self.attn1(self.norm1(hidden_states, temb), context, context_mask)
        return hidden_states + self.ff(self.norm3(hidden_states))


class AlternateVLDiT(nn.Module):
    def __init__(
        self,
        diffusion_model_cfg: dict,
        cross_attention_dim: int,
        attend_text_every_n_blocks: int = 2,
        alternate_vl: bool = True,
    ):
        super().__init__()
        cfg = diffusion_model_cfg
        heads, head_dim = cfg["num_attention_heads"], cfg["attention_head_dim"]
        inner = heads * head_dim
        self.inner_dim = inner
        self.alternate_vl = alternate_vl
        self.timestep_encoder = TimestepEncoder(inner)

        blocks, self.attends_text = [], []
        cross_count = 0
        for idx in range(cfg["num_layers"]):
            cross = idx % 2 == 0 or not cfg.get("interleave_self_attention", True)
            blocks.append(
                BasicTransformerBlock(
                    inner,
                    heads,
                    head_dim,
                    cross_attention_dim if cross else None,
                    dropout=cfg.get("dropout", 0.0),
                    final_dropout=cfg.get("final_dropout", True),
                )
            )
            # Only meaningful for cross blocks: which VL tokens the block attends to.
            self.attends_text.append(cross and cross_count % attend_text_every_n_blocks == 0)
            cross_count += int(cross)
        self.transformer_blocks = nn.ModuleList(blocks)

        self.norm_out = nn.LayerNorm(inner, eps=1e-6, elementwise_affine=False)
        self.proj_out_1 = nn.Linear(inner, 2 * inner)
        self.proj_out_2 = nn.Linear(inner, cfg["output_dim"])

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_attention_mask: torch.Tensor,
        image_mask: torch.Tensor,
    ) -> torch.Tensor:
        """hidden_states (B, S, inner); encoder_hidden_states (B, L, D_vl); masks (B, L) bool; timestep (B,)."""
        temb = self.timestep_encoder(timestep)
        valid = encoder_attention_mask.bool()
        text_keys = valid & ~image_mask
        image_keys = valid & image_mask
        for block, text in zip(self.transformer_blocks, self.attends_text):
            if not block.is_cross_attention:
                hidden_states = block(hidden_states, temb)
                continue
            keys = valid if not self.alternate_vl else (text_keys if text else image_keys)
            hidden_states = block(hidden_states, temb, encoder_hidden_states, keys)
        shift, scale = self.proj_out_1(F.silu(temb)).chunk(2, dim=-1)
        hidden_states = self.norm_out(hidden_states) * (1 + scale[:, None]) + shift[:, None]
        return self.proj_out_2(hidden_states)
