"""The statistics stage's outputs: ``stats.json`` / ``relative_stats.json`` (:func:`write_stats`), the flags of
dimensions worth a look before training (:func:`summary_flags`), and the report (:func:`write_stats_report`):

* ``stats_report.json``: the flags (near-constant dimensions, extreme outliers, q01 == q99), counted per kind, the
  run facts (episodes, cache use, passes, the other numerics' values and their largest relative difference) and the
  per-dimension value histograms.
* ``plots/state_action_ranges.png``: per dimension of state and action, min..max, q01..q99 and mean +- std, with
  flagged dimensions marked.
* ``plots/histograms.png``: per-dimension histograms of state and action (uniform bins on [min, max], counted in the
  statistics' second pass over every frame, or over every k-th frame (``row_stride``) beyond 2**20 frames).

Every JSON file is written atomically by :func:`groot_ft.io.atomic_write_json` (4-space indent, no NaN/inf).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from groot_ft.io import atomic_write_json
from groot_ft.stats.common import RELATIVE_STATS_FILENAME, STAT_KEYS, STATS_FILENAME

REPORT_FILENAME = "stats_report.json"
RANGES_PLOT = "plots/state_action_ranges.png"
HISTOGRAMS_PLOT = "plots/histograms.png"
MAX_HISTOGRAM_DIMS = 64  # per feature in the histogram figure
_FLAG_STYLE = {
    "constant": ("x", "tab:red"),
    "near_constant": ("x", "tab:orange"),
    "q01_eq_q99": ("s", "tab:purple"),
    "outlier_max": ("^", "tab:red"),
    "outlier_min": ("v", "tab:red"),
}


def write_stats(out_dir: str | Path, stats: dict[str, Any], relative_stats: dict[str, Any] | None) -> list[Path]:
    """Write ``out_dir/stats.json`` and (unless None) ``out_dir/relative_stats.json`` atomically; return paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / STATS_FILENAME]
    atomic_write_json(written[0], stats, indent=4, allow_nan=False)
    if relative_stats is not None:
        written.append(out / RELATIVE_STATS_FILENAME)
        atomic_write_json(written[1], relative_stats, indent=4, allow_nan=False)
    return written


def summary_flags(
    stats: dict[str, Any],
    *,
    const_tol: float = 1e-6,
    outlier_factor: float = 10.0,
) -> list[dict[str, Any]]:
    """Dimensions worth a look before training, from a stats.json- or relative_stats.json-shaped dict.

    Flags (one dict each, with ``feature``, ``index`` (dimension, or ``[step, dim]`` for relative stats), ``flag``,
    ``message`` and the relevant values):

    * ``constant``: ``max == min`` (min/max normalisation maps the dimension to 0);
    * ``near_constant``: ``std <= const_tol`` or ``np.isclose(max, min)`` (GR00T's min/max normalisation outputs 0
      for such dimensions, exactly as for constant ones);
    * ``q01_eq_q99``: the 1st and 99th percentiles coincide although the dimension varies (percentile
      normalisation would divide by zero / saturate);
    * ``outlier_max`` / ``outlier_min``: ``max > q99 + outlier_factor * (q99 - q01)`` (or the mirror for min) —
      min/max normalisation would squeeze the bulk of the data into a small part of [-1, 1].
    """
    flags: list[dict[str, Any]] = []
    for feature, entry in stats.items():
        if not isinstance(entry, dict) or not {"min", "max", "std"} <= set(entry):
            continue
        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in entry.items() if k in STAT_KEYS}
        shape = arrays["max"].shape
        for index in np.ndindex(*shape):
            v = {k: float(a[index]) for k, a in arrays.items() if a.shape == shape}
            idx: int | list[int] = int(index[0]) if len(index) == 1 else [int(i) for i in index]
            lo, hi, std = v["min"], v["max"], v["std"]
            span = hi - lo
            base = {"feature": feature, "index": idx}
            if span == 0:
                flags.append({**base, "flag": "constant", "value": lo,
                              "message": f"constant at {lo:g}; min/max normalisation maps it to 0"})
                continue
            if std <= const_tol or np.isclose(hi, lo):
                flags.append({**base, "flag": "near_constant", "std": std, "min": lo, "max": hi,
                              "message": f"near-constant (std {std:.3g}, range {span:.3g})"})
                continue
            if "q01" not in v or "q99" not in v:
                continue
            q01, q99 = v["q01"], v["q99"]
            iqr = q99 - q01
            if iqr == 0:
                flags.append({**base, "flag": "q01_eq_q99", "q01": q01, "q99": q99, "min": lo, "max": hi,
                              "message": f"q01 == q99 == {q01:g} although the range is [{lo:g}, {hi:g}]"})
                continue
            if hi > q99 + outlier_factor * iqr:
                flags.append({**base, "flag": "outlier_max", "max": hi, "q01": q01, "q99": q99,
                              "message": f"max {hi:g} is {(hi - q99) / iqr:.1f} x (q99 - q01) above q99 {q99:g}"})
            if lo < q01 - outlier_factor * iqr:
                flags.append({**base, "flag": "outlier_min", "min": lo, "q01": q01, "q99": q99,
                              "message": f"min {lo:g} is {(q01 - lo) / iqr:.1f} x (q99 - q01) below q01 {q01:g}"})
    return flags


def plotted_features(stats: dict[str, Any]) -> list[str]:
    """State and action features: ``observation.state``/``action`` when present, else every multi-dim feature."""
    preferred = [k for k in ("observation.state", "action") if k in stats]
    if preferred:
        return preferred
    return [k for k, v in stats.items() if len(v.get("mean", [])) > 1] or list(stats)[:2]


def write_stats_report(
    out_dir: str | Path,
    stats: dict[str, Any],
    relative: dict[str, Any] | None,
    flags: list[dict[str, Any]],
    histograms: dict[str, dict[str, Any]] | None = None,
    *,
    extra: dict[str, Any] | None = None,
) -> list[Path]:
    """Write ``stats_report.json`` and the two plots under ``out_dir``; return the paths written."""
    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "format": "groot_ft.stats_report/1",
        "flag_counts": dict(sorted(Counter(f["flag"] for f in flags).items())),
        "flags": flags,
        "features": {k: len(v["mean"]) for k, v in stats.items()},
        "relative": {k: list(np.shape(v["mean"])) for k, v in (relative or {}).items()},
    }
    report.update(extra or {})
    report["histograms"] = histograms or {}
    paths = [out / REPORT_FILENAME, out / RANGES_PLOT, out / HISTOGRAMS_PLOT]
    atomic_write_json(paths[0], report, indent=4, allow_nan=False)
    plot_ranges(stats, flags, paths[1])
    plot_histograms(stats, histograms or {}, paths[2])
    return paths


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_ranges(stats: dict[str, Any], flags: list[dict[str, Any]], out_png: Path) -> None:
    """min..max (grey), q01..q99 (blue), mean +- std (black) per dimension; flagged dimensions marked."""
    plt = _pyplot()
    features = plotted_features(stats)
    fig, axes = plt.subplots(
        max(1, len(features)), 1, figsize=(max(6.0, 0.16 * max((len(stats[f]["mean"]) for f in features),
                                                                 default=1) + 2), 3.2 * max(1, len(features))),
        squeeze=False,
    )
    for ax, name in zip(axes[:, 0], features):
        s = {k: np.asarray(v, dtype=float) for k, v in stats[name].items()}
        x = np.arange(len(s["mean"]))
        ax.vlines(x, s["min"], s["max"], color="lightgray", lw=5, label="min..max")
        ax.vlines(x, s["q01"], s["q99"], color="tab:blue", lw=2.5, label="q01..q99")
        ax.errorbar(x, s["mean"], yerr=s["std"], fmt="o", color="black", ms=2.5, lw=0.8, label="mean ± std")
        seen = set()
        for f in flags:
            if f["feature"] != name or not isinstance(f["index"], int):
                continue
            marker, color = _FLAG_STYLE.get(f["flag"], ("o", "tab:red"))
            i = f["index"]
            y = s["max"][i] if f["flag"] != "outlier_min" else s["min"][i]
            ax.plot([i], [y], marker=marker, color=color, ms=7, ls="none",
                    label=f["flag"] if f["flag"] not in seen else None)
            seen.add(f["flag"])
        ax.set(title=f"{name}: per-dimension ranges", xlabel="dimension", xlim=(-0.7, len(x) - 0.3))
        ax.legend(fontsize=7, ncol=4, loc="best")
    if not features:
        axes[0, 0].text(0.5, 0.5, "no state/action features", ha="center", va="center")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def plot_histograms(stats: dict[str, Any], histograms: dict[str, dict[str, Any]], out_png: Path) -> None:
    """Small-multiple per-dimension histograms of state and action (at most 64 dimensions per feature)."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    features = [f for f in plotted_features(stats) if f in histograms]
    cols = 8
    layout = []  # (feature, dim) per panel, each feature starting on a new row
    for name in features:
        dims = min(MAX_HISTOGRAM_DIMS, len(histograms[name]["counts"]))
        layout.extend((name, d) for d in range(dims))
        layout.extend([None] * (-dims % cols))
    rows = max(1, len(layout) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.0 * cols, 1.45 * rows), squeeze=False)
    for ax, cell in zip(axes.ravel(), layout + [None] * (rows * cols - len(layout))):
        if cell is None:
            ax.axis("off")
            continue
        name, d = cell
        h = histograms[name]
        counts = np.asarray(h["counts"][d], dtype=float)
        lo, hi = float(h["min"][d]), float(h["max"][d])
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, len(counts) + 1)
        ax.stairs(counts, edges, fill=True, color="tab:blue", alpha=0.8)
        ax.set_title(f"{'state' if 'state' in name else name} [{d}]", fontsize=7)
        ax.tick_params(labelsize=5)
        ax.xaxis.set_major_locator(MaxNLocator(3))
        ax.set_yticks([])
    if not features:
        axes[0, 0].axis("on")
        axes[0, 0].text(0.5, 0.5, "no histograms", ha="center", va="center")
    fig.tight_layout(pad=0.4)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
