"""The N1.7 flow-matching action head (upstream ``Gr00tN1d7ActionHead``, ``gr00t/model/gr00t_n1d7/gr00t_n1d7.py``).

What changed from N1.6 (everything else is N1.6's modules, imported; the velocity prediction, the training loss and
the Euler loop are N1.6's :class:`~groot_ft.model.action_head.FlowMatchingActionHead`):

- VL features go through ``vlln`` *and then* the VL self-attention block (:mod:`.vl_attention`) before the DiT.
- State history: ``state`` is (B, state_history_length, max_state_dim); the steps are concatenated into one state
  token (the state encoder reads ``max_state_dim * state_history_length`` inputs).
- State dropout zeroes the dropped samples' state features (no learned mask token, no additive noise), in training
  mode only (upstream's ``forward`` also checks ``self.training``).
- Real-time chunking (RTC) at inference: :meth:`Gr00tN1d7ActionHead.get_action` can start from the previous chunk.

Token sequence into the DiT: ``[state token, action tokens (action_horizon)]``; velocity read from the last
``action_horizon`` positions. Flow matching as N1.6 (:mod:`groot_ft.model.flow_matching`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from ..action_head import FlowMatchingActionHead, sample_noise
from ..dit import AlternateVLDiT
from ..layers import CategorySpecificMLP, MultiEmbodimentActionEncoder
from .configuration import Gr00tN1d7Config
from .vl_attention import VLSelfAttentionTransformer

RTC_OPTION_KEYS = ("action_horizon", "rtc_overlap_steps", "rtc_frozen_steps", "rtc_ramp_rate")


def rtc_velocity_weights(horizon: int, overlap: int, frozen: int, ramp_rate: float) -> torch.Tensor:
    """Per-step velocity weight of real-time chunking, shape (horizon,).

    Upstream: steps ``[0, frozen)`` get 0 (they keep the previous chunk's values exactly: the actions already sent
    while this chunk was computed), steps ``[frozen, overlap)`` follow ``1 - exp(-rate * t)`` on ``t`` evenly spaced
    over ``[0, 1]`` with both ends dropped, normalised by its value at ``t = 1``, and the remaining steps get 1.
    """
    if not 0 <= frozen <= overlap <= horizon:
        raise ValueError(f"RTC needs 0 <= rtc_frozen_steps ({frozen}) <= rtc_overlap_steps ({overlap}) <= {horizon}")
    weights = torch.ones(horizon, dtype=torch.float32)
    weights[:frozen] = 0.0
    intermediate = overlap - frozen
    t = torch.linspace(0.0, 1.0, intermediate + 2)
    ramp = 1 - torch.exp(-ramp_rate * t)
    ramp = ramp / ramp[-1].clamp_min(1e-8)
    weights[frozen:overlap] = ramp[1:-1]
    return weights


class Gr00tN1d7ActionHead(FlowMatchingActionHead):
    def __init__(self, config: Gr00tN1d7Config):
        super().__init__()
        self.config = config
        dit_cfg = config.diffusion_model_cfg
        width = config.input_embedding_dim
        slots = config.max_num_embodiments

        self.model = AlternateVLDiT(
            dit_cfg,
            cross_attention_dim=config.backbone_embedding_dim,
            attend_text_every_n_blocks=config.attend_text_every_n_blocks,
            alternate_vl=config.use_alternate_vl_dit,
        )
        state_inputs = config.max_state_dim * config.state_history_length
        self.state_encoder = CategorySpecificMLP(slots, state_inputs, config.hidden_size, width)
        self.action_encoder = MultiEmbodimentActionEncoder(config.max_action_dim, width, slots)
        self.action_decoder = CategorySpecificMLP(slots, dit_cfg["output_dim"], config.hidden_size, config.max_action_dim)
        self.vlln = nn.LayerNorm(config.backbone_embedding_dim) if config.use_vlln else nn.Identity()
        if config.num_vl_self_attention_layers > 0:
            self.vl_self_attention = VLSelfAttentionTransformer(config.vl_self_attention_cfg)
        else:
            self.vl_self_attention = nn.Identity()
        self.position_embedding = nn.Embedding(config.max_seq_len, width) if config.add_pos_embed else None

    # ----------------------------------------------------------------------------------------------------------------
    def apply_trainable_flags(self, config: Gr00tN1d7Config) -> None:
        super().apply_trainable_flags(config)
        self.vl_self_attention.requires_grad_(config.tune_vlln)  # upstream counts it with vlln

    def encode_state(self, state: torch.Tensor, embodiment_id: torch.Tensor) -> torch.Tensor:
        """(B, state_history_length, max_state_dim) -> one state token (B, 1, width)."""
        history = self.config.state_history_length
        if state.ndim != 3 or state.shape[1] != history or state.shape[2] != self.config.max_state_dim:
            raise ValueError(
                f"state must be (B, state_history_length={history}, max_state_dim={self.config.max_state_dim}), "
                f"got {tuple(state.shape)}"
            )
        features = self.state_encoder(state.reshape(state.shape[0], 1, -1), embodiment_id)
        if self.training and self.config.state_dropout_prob > 0:
            drop = torch.rand(features.shape[0], device=features.device) < self.config.state_dropout_prob
            features = features * (1 - drop[:, None, None].to(features.dtype))
        return features

    def prepare_vl(self, backbone_output: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {
            "features": self.vl_self_attention(self.vlln(backbone_output["backbone_features"])),
            "attention_mask": backbone_output["backbone_attention_mask"],
            "image_mask": backbone_output["image_mask"],
        }

    @torch.no_grad()
    def get_action(
        self,
        backbone_output: Mapping[str, torch.Tensor],
        state: torch.Tensor,
        embodiment_id: torch.Tensor,
        num_inference_timesteps: int | None = None,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
        previous_action: torch.Tensor | None = None,
        options: Mapping[str, float] | None = None,
    ) -> torch.Tensor:
        """Euler-integrate the learned velocity from N(0, I) (or ``noise``); (B, action_horizon, max_action_dim).

        With ``previous_action`` (the previous chunk, (B, action_horizon, max_action_dim), normalised and padded as
        this method returns it) and ``options`` (``action_horizon``: the previous chunk's horizon before padding,
        ``rtc_overlap_steps``, ``rtc_frozen_steps``, ``rtc_ramp_rate``), the first ``rtc_overlap_steps`` rows start
        from that chunk's last ``rtc_overlap_steps`` real rows instead of noise, and each row's Euler update is
        weighted by :func:`rtc_velocity_weights`: frozen rows come out equal to the previous chunk's.
        """
        cfg = self.config
        steps = num_inference_timesteps or cfg.num_inference_timesteps
        vl = self.prepare_vl(backbone_output)
        state_features = self.encode_state(state, embodiment_id)
        batch, device, dtype = state.shape[0], state.device, state_features.dtype
        shape = (batch, cfg.action_horizon, cfg.max_action_dim)
        if noise is None:
            noise = sample_noise(shape, generator, device)
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise must be {shape}, got {tuple(noise.shape)}")
        actions = noise.to(device=device, dtype=dtype).clone()
        weights = None
        if previous_action is not None or options is not None:
            actions, weights = self._rtc_start(actions, previous_action, options)
        return self.integrate(vl, state_features, actions, embodiment_id, steps, weights)

    def _rtc_start(
        self, actions: torch.Tensor, previous_action: torch.Tensor | None, options: Mapping[str, float] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if previous_action is None or options is None:
            raise ValueError("real-time chunking needs both previous_action and options")
        missing = [key for key in RTC_OPTION_KEYS if key not in options]
        if missing:
            raise ValueError(f"RTC options lack {missing} (needed: {list(RTC_OPTION_KEYS)})")
        horizon = int(options["action_horizon"])
        overlap, frozen = int(options["rtc_overlap_steps"]), int(options["rtc_frozen_steps"])
        rate = float(options["rtc_ramp_rate"])
        if (
            previous_action.ndim != 3
            or previous_action.shape[0] != actions.shape[0]
            or previous_action.shape[2] != actions.shape[2]
        ):
            raise ValueError(
                f"previous_action must be (B={actions.shape[0]}, horizon, max_action_dim={actions.shape[2]}), "
                f"got {tuple(previous_action.shape)}"
            )
        if not overlap <= horizon <= previous_action.shape[1]:
            raise ValueError(
                f"RTC needs rtc_overlap_steps ({overlap}) <= action_horizon ({horizon}) <= the previous chunk's "
                f"{previous_action.shape[1]} rows"
            )
        if not math.isfinite(rate):
            raise ValueError(f"rtc_ramp_rate must be finite, got {rate}")
        actions = actions.clone()
        actions[:, :overlap] = previous_action[:, horizon - overlap : horizon].to(actions)
        weights = rtc_velocity_weights(actions.shape[1], overlap, frozen, rate).to(actions)
        return actions, weights[None, :, None]
