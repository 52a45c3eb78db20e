"""Building blocks of the action head: per-embodiment ("category-specific") layers and sinusoidal encodings.

Per-embodiment layers hold one weight slice per embodiment id (``max_num_embodiments`` = 32 slots) so robots with
different state/action layouts share the DiT but not their input/output projections.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class CategorySpecificLinear(nn.Module):
    """``y = x @ W[c] + b[c]`` with ``c`` the sample's embodiment id.

    Parameters are named ``W`` (categories, in, out) and ``b`` (categories, out) as upstream. Instead of gathering one
    (in, out) matrix per sample, samples are grouped by id: a batch usually holds one or two embodiments, so this is
    one matmul per embodiment and no per-sample weight copies.
    """

    def __init__(self, num_categories: int, in_features: int, out_features: int):
        super().__init__()
        self.num_categories = num_categories
        self.in_features = in_features
        self.out_features = out_features
        self.W = nn.Parameter(torch.empty(num_categories, in_features, out_features))
        self.b = nn.Parameter(torch.empty(num_categories, out_features))

    def forward(self, x: torch.Tensor, cat_ids: torch.Tensor) -> torch.Tensor:
        # x: (B, T, in); cat_ids: (B,) long
        ids = cat_ids.tolist()
        if min(ids) < 0 or max(ids) >= self.num_categories:
            raise ValueError(f"embodiment ids {sorted(set(ids))} outside [0, {self.num_categories})")
        first = ids[0]
        if all(i == first for i in ids):
            return torch.matmul(x, self.W[first]) + self.b[first]
        out = None
        for cat in sorted(set(ids)):
            rows = cat_ids == cat
            part = torch.matmul(x[rows], self.W[cat]) + self.b[cat]
            if out is None:  # result dtype is only known after the op (autocast: bf16 matmul + fp32 bias -> fp32)
                out = part.new_empty(*x.shape[:-1], self.out_features)
            out[rows] = part
        return out

    def extra_repr(self) -> str:
        return f"categories={self.num_categories}, in={self.in_features}, out={self.out_features}"


class CategorySpecificMLP(nn.Module):
    """Two category-specific linears with a ReLU between them (upstream's state encoder / action decoder)."""

    def __init__(self, num_categories: int, input_dim: int, hidden_dim: int, output_dim: int):
        super().__init__()
        self.layer1 = CategorySpecificLinear(num_categories, input_dim, hidden_dim)
        self.layer2 = CategorySpecificLinear(num_categories, hidden_dim, output_dim)

    def forward(self, x: torch.Tensor, cat_ids: torch.Tensor) -> torch.Tensor:
        return self.layer2(F.relu(self.layer1(x, cat_ids)), cat_ids)


def sinusoidal_encoding(positions: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """``[sin(p * f_k), cos(p * f_k)]`` with geometric frequencies ``f_k = max_period ** (-k / (dim / 2))``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    angles = positions.float()[..., None] * freqs
    enc = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    if dim % 2:
        enc = F.pad(enc, (0, 1))
    return enc


class MultiEmbodimentActionEncoder(nn.Module):
    """Embeds noisy action tokens together with the flow-matching timestep.

    ``W1`` maps each action step to the model width; the (bucketed) timestep gets a sinusoidal encoding of the same
    width; both are concatenated, mixed by ``W2`` + swish, then projected by ``W3``. All three are per-embodiment.
    """

    def __init__(self, action_dim: int, hidden_size: int, num_embodiments: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.W1 = CategorySpecificLinear(num_embodiments, action_dim, hidden_size)
        self.W2 = CategorySpecificLinear(num_embodiments, 2 * hidden_size, hidden_size)
        self.W3 = CategorySpecificLinear(num_embodiments, hidden_size, hidden_size)

    def forward(self, actions: torch.Tensor, timesteps: torch.Tensor, cat_ids: torch.Tensor) -> torch.Tensor:
        # actions: (B, T, action_dim); timesteps: (B,) bucket indices
        batch, horizon, _ = actions.shape
        action_emb = self.W1(actions, cat_ids)
        tau = sinusoidal_encoding(timesteps[:, None].expand(batch, horizon), self.hidden_size).to(action_emb.dtype)
        x = F.silu(self.W2(torch.cat([action_emb, tau], dim=-1), cat_ids))
        return self.W3(x, cat_ids)


class TimestepEmbedding(nn.Module):
    """Diffusion-style timestep embedding: sinusoid (flip to cos-first) -> Linear -> SiLU -> Linear."""

    def __init__(self, embedding_dim: int, num_channels: int = 256):
        super().__init__()
        self.num_channels = num_channels
        self.linear_1 = nn.Linear(num_channels, embedding_dim)
        self.linear_2 = nn.Linear(embedding_dim, embedding_dim)

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        half = self.num_channels // 2
        # Frequencies span exactly [1, 1/10000] (shift of 1 in the exponent's denominator).
        exponent = -math.log(10000.0) * torch.arange(half, device=timesteps.device, dtype=torch.float32) / (half - 1)
        angles = timesteps.float()[:, None] * torch.exp(exponent)[None]
        proj = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1).to(self.linear_1.weight.dtype)
        return self.linear_2(F.silu(self.linear_1(proj)))


class TimestepEncoder(nn.Module):
    def __init__(self, embedding_dim: int):
        super().__init__()
        self.timestep_embedder = TimestepEmbedding(embedding_dim)

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        return self.timestep_embedder(timesteps)
