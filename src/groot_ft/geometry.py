"""Image sizes the shards and the processor must agree on (no torch, so the data stages can import it)."""

from __future__ import annotations


def shortest_edge_size(height: int, width: int, edge: int) -> tuple[int, int]:
    """Output (H, W) of a resize that makes the shorter side ``edge`` and keeps the aspect ratio."""
    scale = edge / min(height, width)
    if scale == 1.0:
        return height, width
    return max(1, round(height * scale)), max(1, round(width * scale))


def stored_frame_size(height: int, width: int, edge: int, letter_box: bool = False) -> tuple[int, int]:
    """(H, W) the shards store a frame at: the shorter side ``edge``; with N1.7's ``letter_box_transform`` the longer
    side ``edge``, so that the processor's zero padding to a centred square gives ``edge`` x ``edge`` with no second
    resample (upstream pads the full frame to a square, then resizes the square to ``edge``)."""
    if not letter_box:
        return shortest_edge_size(height, width, edge)
    scale = edge / max(height, width)
    if scale == 1.0:
        return height, width
    return max(1, round(height * scale)), max(1, round(width * scale))
