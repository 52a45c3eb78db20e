"""Forward+backward time of a model preset on this machine, per step and per sample.

    .venv/bin/python scripts/bench_model.py --preset tiny --batch 8 --threads 1

Samples are shaped like the demo's processor output: 2 cameras x 1 frame, state 1 x max_state_dim, action chunk
action_horizon x max_action_dim, about 20 instruction tokens. The first --warmup steps are not timed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import groot_ft.model as gm


def make_samples(config, batch: int, cameras: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    side = config.image_size
    out = []
    for _ in range(batch):
        out.append({
            "state": rng.uniform(-1, 1, (1, config.max_state_dim)).astype(np.float32),
            "action": rng.uniform(-1, 1, (config.action_horizon, config.max_action_dim)).astype(np.float32),
            "action_mask": np.ones((config.action_horizon, config.max_action_dim), np.float32),
            "images": rng.integers(0, 256, (cameras, 3, side, side), dtype=np.uint8),
            "text": "move the arm to the red target and grasp it",
            "embodiment_id": 10,
        })
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--cameras", type=int, default=2)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    model, tokenizer = gm.create_model(args.preset)
    model.train()
    batch = gm.Gr00tCollator(tokenizer, model.config)(make_samples(model.config, args.batch, args.cameras))
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        model.zero_grad(set_to_none=True)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"preset={args.preset} params={n_params:,} batch={args.batch} cameras={args.cameras} "
          f"threads={args.threads} tokens={batch['input_ids'].shape[1]}")
    print(f"forward+backward: median {median * 1e3:.1f} ms/step, {median / args.batch * 1e3:.2f} ms/sample "
          f"(min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f} over {len(times)} steps)")


if __name__ == "__main__":
    main()
