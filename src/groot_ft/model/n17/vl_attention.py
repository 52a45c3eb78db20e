"""The VL self-attention block N1.7 runs over the backbone features before the DiT.

Upstream: ``SelfAttentionTransformer`` in ``gr00t/model/modules/dit.py``, built from ``vl_self_attention_cfg``
(released 3B: 4 blocks, 32 heads x 64 = 2048 wide, dropout 0.2, final dropout). Its blocks are diffusers-style
``BasicTransformerBlock``s with the *plain* pre-norm layout: affine LayerNorm (eps 1e-5) -> self-attention (q/k/v and
output projections with bias) -> dropout -> residual -> affine LayerNorm -> tanh-GELU feed-forward (4x) -> residual.
No timestep conditioning, no positional embedding (``positional_embeddings`` null) and **no attention mask**: every
token, left padding included, attends to every other, as upstream does (so padded batches depend on what the
padding positions hold; see docs/model.md).

Attention and feed-forward are the N1.6 DiT's modules (same math, same parameter names: ``attn1.to_{q,k,v}``,
``attn1.to_out.0``, ``ff.net.0.proj``, ``ff.net.2``), so tensor names read
``action_head.vl_self_attention.transformer_blocks.N.{norm1,attn1,norm3,ff}.*``.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from ..dit import Attention, FeedForward


class VLSelfAttentionBlock(GradientCheckpointingLayer):
    def __init__(self, dim: int, heads: int, head_dim: int, dropout: float, final_dropout: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn1 = Attention(dim, heads, head_dim, dropout=dropout)
        self.norm3 = nn.LayerNorm(dim, eps=1e-5)
        self.ff = FeedForward(dim, dropout=dropout, final_dropout=final_dropout)
        self.final_dropout = nn.Dropout(dropout) if final_dropout else None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        attn_output = self.attn1(self.norm1(hidden_states))
        if self.final_dropout is not None:
            attn_output = self.final_dropout(attn_output)
        hidden_states = hidden_states + attn_output
        return hidden_states + self.ff(self.norm3(hidden_states))


class VLSelfAttentionTransformer(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        # Upstream's SelfAttentionTransformer defaults for keys a config may omit.
        heads = cfg.get("num_attention_heads", 8)
        head_dim = cfg.get("attention_head_dim", 64)
        dropout = cfg.get("dropout", 0.1)
        final_dropout = cfg.get("final_dropout", True)
        self.transformer_blocks = nn.ModuleList(
            [
                VLSelfAttentionBlock(heads * head_dim, heads, head_dim, dropout, final_dropout)
                for _ in range(cfg.get("num_layers", 12))
            ]
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        for block in self.transformer_blocks:
            hidden_states = block(hidden_states)
        return hidden_states
