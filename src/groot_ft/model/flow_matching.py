"""Flow-matching formulas of the N1.6 action head, kept apart so tests can check them one by one.

Convention (upstream): t = 0 is pure noise, t = 1 is the clean action.
    s ~ Beta(alpha=1.5, beta=1.0),  t = (1 - s) * noise_s          (t in [0, 0.999), skewed to the noisy end)
    x_t = (1 - t) * noise + t * action,     v = action - noise      (the velocity dx_t/dt)
    bucket = floor(t * num_timestep_buckets)
    loss = sum((v_hat - v)^2 * mask) / (sum(mask) + 1e-6)
Inference integrates dx/dt = v_hat with Euler steps from x_0 ~ N(0, I) at t = 0, 1/n, ..., (n-1)/n.
"""

from __future__ import annotations

import torch


def sample_time(batch_size: int, alpha: float, beta: float, noise_s: float, device=None) -> torch.Tensor:
    """t = (1 - s) * noise_s with s ~ Beta(alpha, beta), drawn from torch's global RNG. Returns float32 (batch_size,)."""
    s = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(beta))).sample((batch_size,))
    return ((1.0 - s) * noise_s).to(device=device, dtype=torch.float32)


def time_bucket(t: torch.Tensor, num_buckets: int) -> torch.Tensor:
    """Discretise t in [0, 1) into integer buckets ``floor(t * num_buckets)`` (the timestep fed to the networks)."""
    return torch.floor(t * num_buckets).long().clamp_(0, num_buckets - 1)


def interpolate(noise: torch.Tensor, action: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) * noise + t * action, with t of shape (B,)."""
    t = t.to(action.dtype)[:, None, None]
    return (1.0 - t) * noise + t * action


def velocity_target(noise: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    return action - noise


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean squared error over the valid (mask == 1) horizon steps and dims. Returns (loss, masked elementwise loss)."""
    mask = mask.to(pred.dtype)
    elementwise = (pred - target).pow(2) * mask
    return elementwise.sum() / (mask.sum() + 1e-6), elementwise


def euler_timesteps(num_steps: int) -> list[float]:
    """t = 0, 1/n, ..., (n - 1)/n; each step adds v_hat / n."""
    return [i / num_steps for i in range(num_steps)]
