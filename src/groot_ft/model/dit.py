"""AlternateVLDiT: the diffusion transformer of the N1.6 action head.

Blocks alternate between cross-attention to the vision-language tokens (even indices) and self-attention over the
state + action tokens (odd indices). Cross-attention blocks look either at the text (non-image) tokens or at the image
tokens: block ``idx`` attends to text when ``idx % (2 * attend_text_every_n_blocks) == 0`` (default 2: blocks 0, 4,
8, ... text; 2, 6, 10, ... image), as upstream's ``AlternateVLDiT.forward``. Every block is conditioned on the
flow-matching timestep through adaptive LayerNorm (scale/shift predicted from the timestep embedding).

Module and parameter names and shapes follow upstream (``gr00t/model/modules/dit.py``, built on diffusers'
``Attention`` / ``FeedForward`` / ``TimestepEmbedding``): ``timestep_encoder.timestep_embedder.linear_{1,2}``,
``transformer_blocks.N.{norm1.linear, attn1.to_{q,k,v}, attn1.to_out.0, ff.net.0.proj, ff.net.2}``, ``proj_out_1``,
``proj_out_2``. Dropout sits where upstream's has it: on the attention output (``attn1.to_out.1``) and once more on
the block's attention branch (``final_dropout``), inside the feed-forward (``ff.net.1``, ``ff.net.3``); attention
probabilities themselves are not dropped (diffusers' processor calls SDPA with ``dropout_p=0``).
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
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=0.0)
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
    """AdaLN -> attention (self or cross) -> dropout -> residual -> LayerNorm -> FF -> residual.

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
        self.final_dropout = nn.Dropout(dropout) if final_dropout else None

    def forward(
        self,
        hidden_states: torch.Tensor,
        temb: torch.Tensor,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        attn_output = self.attn1(self.norm1(hidden_states, temb), context, context_mask)
        if self.final_dropout is not None:
            attn_output = self.final_dropout(attn_output)
        hidden_states = hidden_states + attn_output
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

        interleave = cfg.get("interleave_self_attention", True)
        if alternate_vl and not interleave:
            raise ValueError("AlternateVLDiT needs interleave_self_attention=True (upstream asserts it)")
        blocks, self.attends_text = [], []
        for idx in range(cfg["num_layers"]):
            cross = not (interleave and idx % 2 == 1)  # upstream: odd blocks self-attend when interleaving
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
            # Only meaningful for cross blocks of AlternateVLDiT: upstream attends to the non-image (text) tokens in
            # block idx when idx % (2 * attend_text_every_n_blocks) == 0 and to the image tokens otherwise.
            self.attends_text.append(cross and idx % (2 * attend_text_every_n_blocks) == 0)
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
            # Upstream's plain DiT (use_alternate_vl_dit=False) passes no mask: it attends to every VL position,
            # padding included. AlternateVLDiT masks padding and alternates text / image keys.
            keys = None if not self.alternate_vl else (text_keys if text else image_keys)
            hidden_states = block(hidden_states, temb, encoder_hidden_states, keys)
        shift, scale = self.proj_out_1(F.silu(temb)).chunk(2, dim=-1)
        hidden_states = self.norm_out(hidden_states) * (1 + scale[:, None]) + shift[:, None]
        return self.proj_out_2(hidden_states)
