"""Image preprocessing and augmentation for the processor (no torchvision / albumentations / OpenCV).

Mirrors upstream GR00T N1.6's albumentations pipeline (``upstream-gr00t-n16.md`` §5.1, step 5):

* train: shortest-edge resize (OpenCV's ``INTER_AREA``, as albumentations calls it) -> fractional random crop that
  keeps the aspect ratio (each side x ``crop_fraction``, random position) -> shortest-edge resize again -> optional
  random rotation (uniform in +-``rotation_angle`` degrees, reflected border) -> optional colour jitter (brightness,
  contrast, saturation, hue; always applied, in a random order);
* eval: the same resizes around a centre crop; no rotation, no jitter;
* ``letter_box`` (N1.7's ``letter_box_transform``): before all of it, a non-square frame is zero-padded to a centred
  square (top and left get the smaller half), as upstream's albumentations path pads it.

One :class:`AugmentationParams` is drawn per sample and applied identically to every frame of every camera of that
sample (upstream replays one ``ReplayCompose`` record). Resize, crop and resize again are one linear map per image
axis, so :meth:`ImageTransform.apply` composes them into a matrix per axis (built once per size and crop offset from
:func:`resize_matrix`) and applies the two to all frames of a sample at once, as a
few weighted gathers when each output pixel reads few inputs, else as dense products; rotation and colour jitter,
when enabled, then run as torch ops on that batch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from groot_ft.geometry import shortest_edge_size

JITTER_KEYS = ("brightness", "contrast", "saturation", "hue")

# ITU-R BT.601 luma weights, as OpenCV's RGB2GRAY (used by albumentations' torchvision-style colour ops).
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class AugmentationParams:
    """The random choices for one sample; replayed on every frame and camera of it.

    ``crop`` holds the crop position as fractions in [0, 1] of the free room (``None`` = centre crop), so the same
    record applies to cameras of different resolutions. ``jitter`` is the ordered list of colour operations with
    their factors (``hue`` as a fraction of the full hue circle).
    """

    crop: tuple[float, float] | None = None
    angle: float = 0.0
    jitter: tuple[tuple[str, float], ...] = ()


def parse_color_jitter_params(params: Mapping[str, Any] | None) -> dict[str, tuple[float, float]]:
    """Turn upstream-style jitter settings into sampling ranges.

    Scalars follow torchvision/albumentations: ``brightness``/``contrast``/``saturation`` ``v`` ->
    factor in ``[max(0, 1 - v), 1 + v]``; ``hue`` ``v`` -> shift in ``[-v, v]`` (``v <= 0.5``). Two-element lists are
    taken as explicit ranges. Zero/None entries are dropped (no-op).
    """
    if not params:
        return {}
    if not isinstance(params, Mapping):
        raise ValueError(f"color_jitter_params must be a mapping with keys {JITTER_KEYS}, got {params!r}")
    unknown = sorted(set(params) - set(JITTER_KEYS))
    if unknown:
        raise ValueError(f"color_jitter_params: unknown keys {unknown}; allowed: {', '.join(JITTER_KEYS)}")
    ranges: dict[str, tuple[float, float]] = {}
    for key in JITTER_KEYS:
        value = params.get(key)
        if value is None:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            v = float(value)
            if v < 0:
                raise ValueError(f"color_jitter_params.{key} must be >= 0, got {value!r}")
            if v == 0:
                continue
            if key == "hue":
                if v > 0.5:
                    raise ValueError(f"color_jitter_params.hue must be <= 0.5, got {value!r}")
                lo, hi = -v, v
            else:
                lo, hi = max(0.0, 1.0 - v), 1.0 + v
        elif isinstance(value, Sequence) and len(value) == 2 and all(isinstance(x, (int, float)) for x in value):
            lo, hi = float(value[0]), float(value[1])
            if lo > hi:
                raise ValueError(f"color_jitter_params.{key}: range {value!r} has min > max")
            if key == "hue" and not -0.5 <= lo <= hi <= 0.5:
                raise ValueError(f"color_jitter_params.hue range must lie in [-0.5, 0.5], got {value!r}")
            if key != "hue" and lo < 0:
                raise ValueError(f"color_jitter_params.{key} range must be >= 0, got {value!r}")
        else:
            raise ValueError(f"color_jitter_params.{key}: expected a number or [min, max], got {value!r}")
        ranges[key] = (lo, hi)
    return ranges


def crop_size(height: int, width: int, fraction: float) -> tuple[int, int]:
    return max(1, int(height * fraction)), max(1, int(width * fraction))


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a float (N, C, H, W) batch as OpenCV's ``INTER_AREA`` does (upstream's albumentations resize): one
    :func:`resize_matrix` per axis."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    return resize_matrix(h, size[0]).to(x.dtype) @ x @ resize_matrix(w, size[1]).to(x.dtype).T


@functools.lru_cache(maxsize=256)
def resize_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """The (size_out, size_in) float32 matrix of OpenCV's ``INTER_AREA`` resize along one image axis.

    Shrinking (``cv::resize``'s area path): output pixel ``o`` averages the input interval
    ``[o * s, (o + 1) * s)``, ``s = size_in / size_out``, each input pixel weighted by how much of it the interval
    covers. Enlarging (its linear path with area coefficients): ``sx = floor(o * s)``, ``f = (o + 1) - (sx + 1) / s``,
    weight ``f - floor(f)`` on pixel ``sx + 1`` when ``f > 0`` (else 0) and the rest on ``sx``, clamped at the last
    pixel. OpenCV takes the area path only when both axes shrink; the shortest-edge resizes here keep the aspect
    ratio, so both axes shrink or both enlarge and choosing per axis agrees with it. Uint8 rounding aside (OpenCV
    enlarges in 11-bit fixed point), this is OpenCV's result (tests/test_image_transforms.py holds its numbers).
    Cached and shared: never modify in place.
    """
    matrix = np.zeros((size_out, size_in), np.float64)
    scale = 1.0 / (size_out / size_in)  # as OpenCV derives it, for the same floor() at exact multiples
    if size_out == size_in:
        np.fill_diagonal(matrix, 1.0)
    elif size_out < size_in:
        for o in range(size_out):
            start, end = o * scale, min((o + 1) * scale, size_in)
            for j in range(int(math.floor(start)), min(int(math.ceil(end)), size_in)):
                matrix[o, j] = min(j + 1, end) - max(j, start)
        matrix /= matrix.sum(axis=1, keepdims=True)
    else:
        for o in range(size_out):
            sx = int(math.floor(o * scale))
            f = np.float32((o + 1) - (sx + 1) * (size_out / size_in))  # OpenCV keeps it in float32
            f = 0.0 if f <= 0 else float(f - math.floor(f))
            if sx >= size_in - 1:
                sx, f = size_in - 1, 0.0
            matrix[o, sx] += 1.0 - f
            if f > 0:
                matrix[o, sx + 1] += f
    return torch.from_numpy(matrix.astype(np.float32))


def crop_offset(size: int, cropped: int, position: float | None) -> int:
    """First kept pixel of a crop of ``cropped`` out of ``size``; ``position`` in [0, 1] or None for the centre."""
    if position is None:
        return (size - cropped) // 2
    return min(int(position * (size - cropped + 1)), size - cropped)


@functools.lru_cache(maxsize=1024)
def _axis_map(size: int, padded: int, pad_offset: int, resized: int, cropped: int, offset: int,
              size_out: int) -> torch.Tensor:
    """(size_out, size) matrix of zero padding to ``padded`` (``size`` pixels from ``pad_offset``; the letterbox),
    resize(padded -> resized), crop [offset, offset + cropped), then resize back."""
    back = torch.zeros(size_out, resized)
    back[:, offset : offset + cropped] = resize_matrix(cropped, size_out)
    forward = resize_matrix(padded, resized)
    if padded != size:
        forward = forward[:, pad_offset : pad_offset + size]  # padded pixels are 0: their columns drop out
    return back @ forward


# Above this many non-zero weights per output pixel a dense product is cheaper than one gather per weight
_MAX_TAPS = 4


@functools.lru_cache(maxsize=1024)
def _axis_taps(*key: int) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`_axis_map` as (K, size_out) input indices and weights: output ``o`` is the sum over ``k`` of
    ``weight[k, o] * input[index[k, o]]``. None when some output needs more than ``_MAX_TAPS`` inputs."""
    matrix = _axis_map(*key).numpy()
    nonzero = matrix != 0
    first = nonzero.argmax(axis=1)
    last = matrix.shape[1] - nonzero[:, ::-1].argmax(axis=1)
    last[~nonzero.any(axis=1)] = first[~nonzero.any(axis=1)]  # an output inside the letterbox's padding reads nothing
    taps = max(int((last - first).max()), 1)
    if taps > _MAX_TAPS:
        return None
    index = np.minimum(first, matrix.shape[1] - taps)[None, :] + np.arange(taps)[:, None]
    return index, np.take_along_axis(matrix, index.T, axis=1).T.copy()


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate a float (N, C, H, W) batch about the image centre (bilinear, reflected border, same size)."""
    if degrees == 0:
        return x
    n, _, h, w = x.shape
    rad = math.radians(degrees)
    c, s = math.cos(rad), math.sin(rad)
    # Rotation in pixel space expressed in grid_sample's normalised coordinates (x spans W, y spans H).
    theta = torch.tensor([[c, -s * h / w, 0.0], [s * w / h, c, 0.0]], dtype=x.dtype)
    grid = F.affine_grid(theta.expand(n, 2, 3), [n, 1, h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _gray(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return _GRAY_WEIGHTS[0] * r + _GRAY_WEIGHTS[1] * g + _GRAY_WEIGHTS[2] * b


def adjust_brightness(x: torch.Tensor, factor: float) -> torch.Tensor:
    return (x * factor).clamp_(0.0, 255.0)


def adjust_contrast(x: torch.Tensor, factor: float) -> torch.Tensor:
    mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)  # per image, as albumentations/torchvision
    return (x * factor + mean * (1.0 - factor)).clamp_(0.0, 255.0)


def adjust_saturation(x: torch.Tensor, factor: float) -> torch.Tensor:
    return (x * factor + _gray(x) * (1.0 - factor)).clamp_(0.0, 255.0)


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> HSV in [0, 1] (hue as a fraction of the circle)."""
    r, g, b = rgb.unbind(1)
    maxc, _ = rgb.max(dim=1)
    minc, _ = rgb.min(dim=1)
    delta = maxc - minc
    safe_delta = torch.where(delta > 0, delta, torch.ones_like(delta))
    sat = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    rc, gc, bc = (maxc - r) / safe_delta, (maxc - g) / safe_delta, (maxc - b) / safe_delta
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(delta > 0, (hue / 6.0) % 1.0, torch.zeros_like(hue))
    return torch.stack([hue, sat, maxc], dim=1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hsv`."""
    h, s, v = hsv.unbind(1)
    h6 = h * 6.0
    i = torch.floor(h6)
    f = h6 - i
    i = i.long() % 6
    p = v * (1.0 - s)
    q = v * (1.0 - s * f)
    t = v * (1.0 - s * (1.0 - f))
    # sector -> (r, g, b) source among (v, q, p, t)
    choices = torch.stack([v, q, p, t], dim=1)  # (N, 4, H, W)
    table = torch.tensor([[0, 3, 2], [1, 0, 2], [2, 0, 3], [2, 1, 0], [3, 2, 0], [0, 2, 1]], device=hsv.device)
    idx = table[i].permute(0, 3, 1, 2)  # (N, 3, H, W)
    return torch.gather(choices, 1, idx)


def adjust_hue(x: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate hue by ``shift`` (fraction of the circle) on a [0, 255] float batch."""
    if shift == 0:
        return x
    hsv = rgb_to_hsv(x / 255.0)
    hsv[:, 0] = (hsv[:, 0] + shift) % 1.0
    return (hsv_to_rgb(hsv) * 255.0).clamp_(0.0, 255.0)


_JITTER_OPS = {
    "brightness": adjust_brightness,
    "contrast": adjust_contrast,
    "saturation": adjust_saturation,
    "hue": adjust_hue,
}


class ImageTransform:
    """The per-sample image pipeline; call :meth:`sample_params` once per sample, then :meth:`apply` per batch."""

    def __init__(
        self,
        shortest_image_edge: int,
        crop_fraction: float = 0.95,
        random_rotation_angle: float | None = None,
        color_jitter_params: Mapping[str, Any] | None = None,
        letter_box: bool = False,
    ) -> None:
        if not isinstance(shortest_image_edge, int) or isinstance(shortest_image_edge, bool) or shortest_image_edge < 1:
            raise ValueError(f"shortest_image_edge must be a positive integer, got {shortest_image_edge!r}")
        if not 0.0 < float(crop_fraction) <= 1.0:
            raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction!r}")
        if random_rotation_angle is not None and float(random_rotation_angle) < 0:
            raise ValueError(f"random_rotation_angle must be >= 0 degrees, got {random_rotation_angle!r}")
        self.shortest_image_edge = shortest_image_edge
        self.crop_fraction = float(crop_fraction)
        self.random_rotation_angle = float(random_rotation_angle or 0.0)
        self.jitter_ranges = parse_color_jitter_params(color_jitter_params)
        # N1.7's letter_box_transform: a non-square frame is first zero-padded to a centred square, as upstream
        self.letter_box = bool(letter_box)

    def sample_params(self, rng: np.random.Generator, train: bool) -> AugmentationParams:
        if not train:
            return AugmentationParams()
        position = (float(rng.random()), float(rng.random()))
        angle = 0.0
        if self.random_rotation_angle > 0:
            angle = float(rng.uniform(-self.random_rotation_angle, self.random_rotation_angle))
        jitter: tuple[tuple[str, float], ...] = ()
        if self.jitter_ranges:
            names = list(self.jitter_ranges)
            order = rng.permutation(len(names))
            jitter = tuple((names[i], float(rng.uniform(*self.jitter_ranges[names[i]]))) for i in order)
        return AugmentationParams(crop=position, angle=angle, jitter=jitter)

    def _padded(self, height: int, width: int) -> tuple[int, int]:
        return (max(height, width),) * 2 if self.letter_box else (height, width)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        h, w = shortest_edge_size(*self._padded(height, width), self.shortest_image_edge)
        h, w = crop_size(h, w, self.crop_fraction)
        return shortest_edge_size(h, w, self.shortest_image_edge)

    def _axis_keys(self, height: int, width: int, params: AugmentationParams) -> tuple[tuple[int, ...], ...]:
        """Arguments of :func:`_axis_map` for the rows and the columns under ``params``."""
        ph, pw = self._padded(height, width)
        h, w = shortest_edge_size(ph, pw, self.shortest_image_edge)
        ch, cw = crop_size(h, w, self.crop_fraction)
        oh, ow = shortest_edge_size(ch, cw, self.shortest_image_edge)
        position = params.crop if (ch, cw) != (h, w) else None
        y0 = crop_offset(h, ch, None if position is None else position[0])
        x0 = crop_offset(w, cw, None if position is None else position[1])
        return (height, ph, (ph - height) // 2, h, ch, y0, oh), (width, pw, (pw - width) // 2, w, cw, x0, ow)

    def apply(self, frames: np.ndarray, params: AugmentationParams) -> np.ndarray:
        """uint8 (N, H, W, 3) -> uint8 (N, 3, H', W'), the same ``params`` for every frame."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected uint8 frames shaped (N, H, W, 3), got {frames.shape}")
        if frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames, got dtype {frames.dtype}")
        n, height, width, _ = frames.shape
        row_key, col_key = self._axis_keys(height, width, params)
        row_taps, col_taps = _axis_taps(*row_key), _axis_taps(*col_key)
        x = frames.transpose(0, 3, 1, 2).astype(np.float32).reshape(n * 3, height, width)
        if row_taps is not None and col_taps is not None:
            # frames stored at the working size: a crop enlarged back takes two inputs per output pixel, and a
            # handful of gathers beats a dense product. numpy without BLAS also keeps OpenBLAS's thread pool,
            # which deadlocked a forked DataLoader worker, out of the way.
            index, weight = col_taps
            y = x[:, :, index[0]] * weight[0]
            for k in range(1, len(index)):
                y += x[:, :, index[k]] * weight[k]
            index, weight = row_taps
            out = y[:, index[0], :] * weight[0][:, None]
            for k in range(1, len(index)):
                out += y[:, index[k], :] * weight[k][:, None]
            t = torch.from_numpy(out)
        else:  # large resizes (full-size frames): dense products, in torch for the same reason
            rows, cols = _axis_map(*row_key), _axis_map(*col_key)
            t = torch.matmul(rows, torch.from_numpy(x).reshape(-1, width).matmul(cols.T).reshape(n * 3, height, -1))
        t = t.reshape(n, 3, t.shape[-2], t.shape[-1])
        if params.angle or params.jitter:
            t = rotate(t, params.angle)
            for name, factor in params.jitter:
                t = _JITTER_OPS[name](t, factor)
        out = t.numpy()
        np.rint(out, out=out)
        np.clip(out, 0.0, 255.0, out=out)
        return out.astype(np.uint8)

    def __call__(self, frames: np.ndarray, rng: np.random.Generator | None = None, train: bool = False) -> np.ndarray:
        params = self.sample_params(rng if rng is not None else np.random.default_rng(), train)
        return self.apply(frames, params)
