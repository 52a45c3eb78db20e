"""Image preprocessing/augmentation: sizes, resampling, colour ops, parameter sampling and replay."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from groot_ft.image_transforms import (
    AugmentationParams,
    ImageTransform,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    crop_offset,
    crop_size,
    hsv_to_rgb,
    resize,
    resize_matrix,
    parse_color_jitter_params,
    rgb_to_hsv,
    rotate,
    shortest_edge_size,
)

JITTER = {"brightness": 0.3, "contrast": 0.4, "saturation": 0.5, "hue": 0.08}


def resize_shortest_edge(x: torch.Tensor, edge: int) -> torch.Tensor:
    """Reference step: resize so the shorter side is ``edge``."""
    return resize(x, shortest_edge_size(x.shape[-2], x.shape[-1], edge))


def crop(x: torch.Tensor, fraction: float, position: tuple[float, float] | None) -> torch.Tensor:
    """Reference step: crop each side to ``fraction``; ``position`` = fractions of the free room, None = centre."""
    h, w = x.shape[-2:]
    ch, cw = crop_size(h, w, fraction)
    if (ch, cw) == (h, w):
        return x
    y0 = crop_offset(h, ch, None if position is None else position[0])
    x0 = crop_offset(w, cw, None if position is None else position[1])
    return x[..., y0 : y0 + ch, x0 : x0 + cw]


def _frames(n: int, h: int = 96, w: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_output_sizes() -> None:
    assert shortest_edge_size(96, 96, 48) == (48, 48)
    assert shortest_edge_size(96, 128, 48) == (48, 64)
    assert shortest_edge_size(48, 48, 48) == (48, 48)
    t = ImageTransform(48, 0.95)
    assert t.output_size(96, 96) == (48, 48)
    assert t.output_size(96, 128) == (48, 64)  # 48x64 -> crop 45x60 -> 48x64
    out = t.apply(_frames(3, 96, 128), t.sample_params(np.random.default_rng(0), train=True))
    assert out.shape == (3, 3, 48, 64) and out.dtype == np.uint8


def test_area_downsampling_is_block_mean() -> None:
    frames = _frames(2)
    out = ImageTransform(48, crop_fraction=1.0).apply(frames, AugmentationParams())
    block = frames.astype(np.float64).reshape(2, 48, 2, 48, 2, 3).mean(axis=(2, 4))
    expected = np.rint(block).transpose(0, 3, 1, 2)
    assert np.abs(out.astype(np.int32) - expected).max() <= 1


def test_centre_and_positioned_crop() -> None:
    assert (crop_offset(10, 8, None), crop_offset(10, 8, 0.0), crop_offset(10, 8, 0.999)) == (1, 0, 2)
    x = torch.arange(10 * 10, dtype=torch.float32).reshape(1, 1, 10, 10)
    centre = crop(x, 0.8, None)  # 8x8 at offset 1
    assert centre.shape[-2:] == (8, 8) and centre[0, 0, 0, 0].item() == 11
    assert crop(x, 0.8, (0.0, 0.0))[0, 0, 0, 0].item() == 0
    assert crop(x, 0.8, (0.999, 0.999))[0, 0, 0, 0].item() == 22  # last position (2, 2)
    assert crop(x, 1.0, (0.5, 0.5)) is x


def test_resize_shortest_edge_upsamples() -> None:
    x = torch.rand(2, 3, 45, 60) * 255
    assert resize_shortest_edge(x, 48).shape == (2, 3, 48, 64)


def test_rotate_zero_is_identity_and_90_is_rot90() -> None:
    x = torch.rand(2, 3, 16, 16) * 255
    assert torch.equal(rotate(x, 0.0), x)
    r = rotate(x, 90.0)
    candidates = [torch.rot90(x, k, dims=(2, 3)) for k in (1, -1)]
    assert min((r - c).abs().max().item() for c in candidates) < 1e-3


def test_hsv_round_trip_and_hue_shift() -> None:
    rgb = torch.rand(4, 3, 8, 8)
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(rgb)), rgb, atol=1e-5)
    red = torch.zeros(1, 3, 2, 2)
    red[:, 0] = 255.0
    green = adjust_hue(red, 1.0 / 3.0)
    assert torch.allclose(green[0, :, 0, 0], torch.tensor([0.0, 255.0, 0.0]), atol=1e-3)
    assert torch.allclose(adjust_hue(red, 1.0), red, atol=1e-3)  # full circle


def test_brightness_contrast_saturation() -> None:
    x = torch.rand(2, 3, 8, 8) * 200
    assert torch.allclose(adjust_brightness(x.clone(), 0.5), x * 0.5)
    assert torch.allclose(adjust_brightness(x.clone(), 10.0).max(), torch.tensor(255.0))
    gray = adjust_saturation(x.clone(), 0.0)
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])
    flat = adjust_contrast(x.clone(), 0.0)
    for i in range(2):  # every pixel of an image becomes that image's mean luma
        assert torch.allclose(flat[i], flat[i, 0, 0, 0].expand_as(flat[i]))
    assert not torch.allclose(flat[0, 0, 0, 0], flat[1, 0, 0, 0])
    assert torch.allclose(adjust_contrast(x.clone(), 1.0), x) and torch.allclose(adjust_saturation(x.clone(), 1.0), x)


def test_parse_color_jitter_params() -> None:
    ranges = parse_color_jitter_params(JITTER)
    assert ranges["brightness"] == pytest.approx((0.7, 1.3))
    assert ranges["hue"] == pytest.approx((-0.08, 0.08))
    assert parse_color_jitter_params({"brightness": 2.0})["brightness"] == (0.0, 3.0)
    assert parse_color_jitter_params({"contrast": [0.5, 1.5], "saturation": 0}) == {"contrast": (0.5, 1.5)}
    assert parse_color_jitter_params(None) == {} and parse_color_jitter_params({}) == {}
    for bad, msg in (({"gamma": 0.1}, "unknown keys"), ({"hue": 0.7}, "hue"), ({"brightness": -1}, ">= 0")):
        with pytest.raises(ValueError, match=msg):
            parse_color_jitter_params(bad)


def test_sample_params() -> None:
    t = ImageTransform(48, 0.95, random_rotation_angle=10, color_jitter_params=JITTER)
    assert t.sample_params(np.random.default_rng(0), train=False) == AugmentationParams()
    a = t.sample_params(np.random.default_rng(5), train=True)
    assert a == t.sample_params(np.random.default_rng(5), train=True)
    assert a.crop is not None and -10 <= a.angle <= 10
    assert sorted(name for name, _ in a.jitter) == sorted(JITTER)
    for name, factor in a.jitter:
        lo, hi = t.jitter_ranges[name]
        assert lo <= factor <= hi
    plain = ImageTransform(48).sample_params(np.random.default_rng(0), train=True)
    assert plain.angle == 0.0 and plain.jitter == ()


def test_params_replayed_identically_per_frame() -> None:
    t = ImageTransform(48, 0.9, random_rotation_angle=15, color_jitter_params=JITTER)
    frames = _frames(4, seed=3)
    params = t.sample_params(np.random.default_rng(1), train=True)
    together = t.apply(frames, params)
    one_by_one = np.concatenate([t.apply(frames[i : i + 1], params) for i in range(4)])
    assert np.array_equal(together, one_by_one)


def test_input_validation() -> None:
    t = ImageTransform(48)
    with pytest.raises(ValueError, match="uint8"):
        t.apply(np.zeros((1, 8, 8, 3), np.float32), AugmentationParams())
    with pytest.raises(ValueError, match="N, H, W, 3"):
        t.apply(np.zeros((8, 8, 3), np.uint8), AugmentationParams())
    for kwargs, msg in (
        ({"shortest_image_edge": 0}, "shortest_image_edge"),
        ({"shortest_image_edge": 48, "crop_fraction": 0.0}, "crop_fraction"),
        ({"shortest_image_edge": 48, "random_rotation_angle": -1}, "random_rotation_angle"),
    ):
        with pytest.raises(ValueError, match=msg):
            ImageTransform(**kwargs)


def _reference(t: ImageTransform, frames: np.ndarray, params: AugmentationParams) -> np.ndarray:
    """The pipeline step by step in torch: what ``apply``'s per-axis matrices must reproduce."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    x = resize_shortest_edge(x, t.shortest_image_edge)
    x = crop(x, t.crop_fraction, params.crop)
    x = resize_shortest_edge(x, t.shortest_image_edge)
    x = rotate(x, params.angle)
    for name, factor in params.jitter:
        x = {"brightness": adjust_brightness, "contrast": adjust_contrast, "saturation": adjust_saturation,
             "hue": adjust_hue}[name](x, factor)
    return x.round().clamp(0, 255).to(torch.uint8).numpy()


@pytest.mark.parametrize(
    ("shape", "fraction", "crop_at"),
    [
        ((48, 48), 0.95, (0.3, 0.7)),  # stored at the working size: crop and enlarge back
        ((96, 128), 0.95, (0.0, 0.999)),  # exact 2x shrink, non-square
        ((256, 256), 0.95, (0.5, 0.5)),  # gr1's camera: non-integer shrink
        ((45, 61), 0.9, None),  # enlarge, odd sizes, centre crop
        ((100, 100), 1.0, (0.2, 0.2)),  # no crop
    ],
)
def test_apply_equals_the_step_by_step_pipeline(shape, fraction, crop_at) -> None:
    t = ImageTransform(48, fraction)
    frames = _frames(3, *shape, seed=7)
    params = AugmentationParams(crop=crop_at)
    fast, slow = t.apply(frames, params), _reference(t, frames, params)
    assert fast.shape == slow.shape == (3, 3, *t.output_size(*shape))
    diff = np.abs(fast.astype(np.int32) - slow)
    # float sums in another order may round an exact .5 the other way (frequent on exact 2x shrinks, whose block
    # means are multiples of 0.25); nothing else may differ
    assert diff.max() <= 1 and (diff > 0).mean() < 3e-3
    augmented = ImageTransform(48, fraction, random_rotation_angle=20, color_jitter_params=JITTER)
    params = augmented.sample_params(np.random.default_rng(3), train=True)
    diff = np.abs(augmented.apply(frames, params).astype(np.int32) - _reference(augmented, frames, params))
    assert diff.max() <= 1 and (diff > 0).mean() < 3e-3


def test_resize_is_opencvs_inter_area() -> None:
    """OpenCV 4.13's cv2.resize(..., interpolation=cv2.INTER_AREA), what upstream's albumentations pipeline calls (the
    numbers were produced with it; OpenCV is not a dependency here)."""
    def along(values, size_out):
        return (resize_matrix(len(values), size_out) @ torch.tensor(values, dtype=torch.float32)).tolist()

    assert along([0, 10, 20, 30, 40], 2) == pytest.approx([8, 32])  # shrink by 2.5: fractional coverage
    assert along([0, 10, 20, 30, 40, 50, 60], 3) == pytest.approx([7.142857, 30.000002, 52.857143])
    assert along([0, 100], 5) == pytest.approx([0, 0, 50, 100, 100])  # enlarge: OpenCV's area coefficients
    assert along([0, 100, 50], 7) == pytest.approx([0, 0, 66.66667, 100, 83.33333, 50, 50])
    image = torch.tensor([[95, 130, 194, 217, 207], [235, 15, 163, 33, 215], [217, 130, 248, 189, 16],
                          [69, 184, 232, 205, 78]], dtype=torch.float32)[None, None]
    shrunk = [[118, 166, 194], [165, 160, 114], [132, 216, 118]]
    enlarged = [[95, 109, 130, 181, 199, 217, 211, 207], [130, 118, 101, 169, 183, 171, 194, 209],
                [235, 147, 15, 133, 137, 33, 142, 215], [226, 165, 73, 179, 186, 111, 114, 116],
                [217, 182, 130, 224, 236, 189, 85, 16], [106, 132, 171, 223, 229, 201, 118, 63],
                [69, 115, 184, 222, 227, 205, 129, 78]]
    assert resize(image, (3, 3))[0, 0].round().int().tolist() == shrunk
    # OpenCV enlarges uint8 in 11-bit fixed point: within one level
    assert (resize(image, (7, 8))[0, 0].round() - torch.tensor(enlarged)).abs().max() <= 1


@pytest.mark.parametrize("shape", [(48, 64), (64, 48), (45, 61), (40, 40)])
def test_letter_box_equals_padding_first(shape) -> None:
    """Zero-padding to a centred square (the smaller half above / left), then the usual pipeline."""
    frames = _frames(2, *shape, seed=3)
    side = max(shape)
    padded = np.zeros((2, side, side, 3), np.uint8)
    top, left = (side - shape[0]) // 2, (side - shape[1]) // 2
    padded[:, top:top + shape[0], left:left + shape[1]] = frames
    boxed = ImageTransform(32, 0.95, letter_box=True)
    assert boxed.output_size(*shape) == (32, 32)
    for params in (AugmentationParams(), AugmentationParams(crop=(0.2, 0.9))):
        diff = boxed.apply(frames, params).astype(int) - ImageTransform(32, 0.95).apply(padded, params)
        assert np.abs(diff).max() <= 1 and (diff != 0).mean() < 3e-3
