"""The N1.6 flow-matching action head (upstream ``Gr00tN1d6ActionHead``).

Token sequence into the DiT: ``[state tokens (T_s), action tokens (action_horizon)]``; the velocity prediction is read
from the last ``action_horizon`` positions. VL features from the backbone are LayerNormed (``vlln``) and used as the
DiT's cross-attention context.

Differences from upstream's ``gr00t/model/gr00t_n1d6/gr00t_n1d6.py`` that do not change results: the action decoder
runs on the action positions only (upstream decodes every position and slices; the decoder is per token), and the
discrete timestep is ``floor(t * buckets)`` (upstream ``.long()``: the same for t >= 0). One behavioural difference:
state dropout / additive state noise apply in training mode only (upstream's ``forward`` applies state dropout whenever
``state_dropout_prob > 0``, also for a loss computed in eval mode); sampling never applies either, as upstream.
"""

from __future__ import annotations

import torch
from torch import nn

from . import flow_matching as fm
from .configuration import Gr00tN1d6Config
from .dit import AlternateVLDiT
from .layers import CategorySpecificMLP, MultiEmbodimentActionEncoder


def sample_noise(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """The fp32 N(0, I) start of sampling, drawn on the generator's device (a CPU generator also seeds a CUDA model)."""
    noise_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=noise_device, dtype=torch.float32)


class FlowMatchingActionHead(nn.Module):
    """What the N1.6 and N1.7 heads share: the DiT velocity prediction, the training loss and Euler sampling.

    A subclass builds ``state_encoder``, ``action_encoder``, ``position_embedding``, ``model`` (the DiT) and
    ``action_decoder``, and defines ``prepare_vl`` and ``encode_state`` (the two families differ there).
    """

    def apply_trainable_flags(self, config) -> None:
        """requires_grad of the parts both families have: encoders, decoder and position table (tune_projector), the
        DiT (tune_diffusion_model) and vlln (tune_vlln). A subclass adds its own parts."""
        for module in (self.state_encoder, self.action_encoder, self.action_decoder, self.position_embedding):
            if module is not None:
                module.requires_grad_(config.tune_projector)
        self.model.requires_grad_(config.tune_diffusion_model)
        self.vlln.requires_grad_(config.tune_vlln)

    def predict_velocity(
        self,
        vl: dict[str, torch.Tensor],
        state_features: torch.Tensor,
        noisy_action: torch.Tensor,
        t_bucket: torch.Tensor,
        embodiment_id: torch.Tensor,
    ) -> torch.Tensor:
        """v_hat for ``noisy_action`` (B, H, max_action_dim) at integer timesteps ``t_bucket`` (B,)."""
        horizon = noisy_action.shape[1]
        action_features = self.action_encoder(noisy_action, t_bucket, embodiment_id)
        if self.position_embedding is not None:
            positions = torch.arange(horizon, device=noisy_action.device)
            action_features = action_features + self.position_embedding(positions)[None].to(action_features.dtype)
        out = self.model(
            torch.cat([state_features, action_features], dim=1),
            encoder_hidden_states=vl["features"],
            timestep=t_bucket,
            encoder_attention_mask=vl["attention_mask"],
            image_mask=vl["image_mask"],
        )
        # The decoder is per token: decoding only the action positions equals upstream's decode-then-slice.
        return self.action_decoder(out[:, -horizon:], embodiment_id)

    def forward(
        self,
        backbone_output: dict[str, torch.Tensor],
        state: torch.Tensor,
        action: torch.Tensor,
        action_mask: torch.Tensor,
        embodiment_id: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Training step: one random flow-matching time per sample; returns the masked MSE and its parts.
        Noise and time come from torch's global RNG (seed it to reproduce)."""
        cfg = self.config
        vl = self.prepare_vl(backbone_output)
        state_features = self.encode_state(state, embodiment_id)
        noise = torch.randn_like(action)
        t = fm.sample_time(action.shape[0], cfg.noise_beta_alpha, cfg.noise_beta_beta, cfg.noise_s, action.device)
        noisy = fm.interpolate(noise, action, t)
        target = fm.velocity_target(noise, action)
        t_bucket = fm.time_bucket(t, cfg.num_timestep_buckets)
        pred = self.predict_velocity(vl, state_features, noisy, t_bucket, embodiment_id)
        loss, elementwise = fm.masked_mse(pred, target, action_mask)
        return {"loss": loss, "action_loss": elementwise, "action_mask": action_mask}

    def integrate(
        self,
        vl: dict[str, torch.Tensor],
        state_features: torch.Tensor,
        actions: torch.Tensor,
        embodiment_id: torch.Tensor,
        steps: int,
        weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Euler-integrate the learned velocity from ``actions`` at t = 0 over ``steps`` steps; ``weights`` (optional,
        broadcast against ``actions``) scales each element's update (N1.7's real-time chunking)."""
        batch, buckets = actions.shape[0], self.config.num_timestep_buckets
        for t in fm.euler_timesteps(steps):
            # Bucket from the exact step fraction, as upstream's int(t / n * buckets).
            t_bucket = torch.full((batch,), int(t * buckets), device=actions.device, dtype=torch.long)
            velocity = self.predict_velocity(vl, state_features, actions, t_bucket, embodiment_id)
            step = velocity / steps if weights is None else velocity * weights / steps
            actions = actions + step
        return actions


class Gr00tN1d6ActionHead(FlowMatchingActionHead):
    def __init__(self, config: Gr00tN1d6Config):
        super().__init__()
        self.config = config
        dit_cfg = config.diffusion_model_cfg
        width = config.input_embedding_dim
        slots = config.max_num_embodiments

        self.vlln = nn.LayerNorm(config.backbone_embedding_dim) if config.use_vlln else nn.Identity()
        self.state_encoder = CategorySpecificMLP(slots, config.max_state_dim, config.hidden_size, width)
        self.action_encoder = MultiEmbodimentActionEncoder(config.max_action_dim, width, slots)
        self.position_embedding = nn.Embedding(config.max_seq_len, width) if config.add_pos_embed else None
        self.model = AlternateVLDiT(
            dit_cfg,
            cross_attention_dim=config.backbone_embedding_dim,
            attend_text_every_n_blocks=config.attend_text_every_n_blocks,
            alternate_vl=config.use_alternate_vl_dit,
        )
        self.action_decoder = CategorySpecificMLP(slots, dit_cfg["output_dim"], config.hidden_size, config.max_action_dim)
        # Learned replacement for the state tokens, only when state dropout is on (as upstream; a checkpoint without
        # it gets a freshly initialised one when loaded with state_dropout_prob > 0).
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width)) if config.state_dropout_prob > 0 else None

    # ----------------------------------------------------------------------------------------------------------------
    def apply_trainable_flags(self, config: Gr00tN1d6Config) -> None:
        super().apply_trainable_flags(config)
        if self.mask_token is not None:
            self.mask_token.requires_grad_(config.tune_projector)

    def encode_state(self, state: torch.Tensor, embodiment_id: torch.Tensor) -> torch.Tensor:
        features = self.state_encoder(state, embodiment_id)  # (B, T_s, width)
        if self.training and self.mask_token is not None:
            drop = torch.rand(features.shape[0], device=features.device) < self.config.state_dropout_prob
            features = torch.where(drop[:, None, None], self.mask_token.to(features.dtype), features)
        if self.training and self.config.state_additive_noise_scale > 0:
            features = features + torch.randn_like(features) * self.config.state_additive_noise_scale
        return features

    def prepare_vl(self, backbone_output: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {
            "features": self.vlln(backbone_output["backbone_features"]),
            "attention_mask": backbone_output["backbone_attention_mask"],
            "image_mask": backbone_output["image_mask"],
        }

    @torch.no_grad()
    def get_action(
        self,
        backbone_output: dict[str, torch.Tensor],
        state: torch.Tensor,
        embodiment_id: torch.Tensor,
        num_inference_timesteps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Euler-integrate the learned velocity from N(0, I) noise; returns (B, action_horizon, max_action_dim)."""
        cfg = self.config
        steps = num_inference_timesteps or cfg.num_inference_timesteps
        vl = self.prepare_vl(backbone_output)
        state_features = self.encode_state(state, embodiment_id)
        batch = state.shape[0]
        dtype = state_features.dtype
        shape = (batch, cfg.action_horizon, cfg.max_action_dim)
        actions = sample_noise(shape, generator, state.device).to(device=state.device, dtype=dtype)
        return self.integrate(vl, state_features, actions, embodiment_id, steps)
