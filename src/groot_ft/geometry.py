"""Image sizes the shards and the processor must agree on (no torch, so the data stages can import it)."""

from __future__ import annotations


def shortest_edge_size(height: int, width: int, edge: int) -> tuple[int, int]:
    """Output (H, W) of a resize that makes the shorter side ``edge`` and keeps the aspect ratio."""
    scale = edge / min(height, width)
    if scale == 1.0:
        return height, width
    return max(1, round(height * scale)), max(1, round(width * scale))
