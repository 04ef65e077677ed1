"""Pictures where people look rather than read: a brake item's curves as an SVG.

`brake_curves_svg(item)` is a pure function of a judged brake item (B{n}, or one axle of B0's
`process_data.axles`): the left and right brake force over time, the imbalance window, each
side's F_max, and the point of largest left-right difference, as vendors' reports print them.
The curves are drawn in the data's own units (seconds, daN) under one transform, so the numbers in
the file are the result's samples themselves. `write_brake_figures()` writes one file per curve
beside the inspection record and adds a `figures` reference to the item (path relative to the
lane's `state_dir`, and its SHA-256), before the result is signed.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 720, 360
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 40, 44  # margins, px
COLOURS = {"left": "#1f77b4", "right": "#d62728"}


def _nice_step(span: float, ticks: int = 6) -> float:
    """A round tick step (1, 2 or 5 × 10^k) giving about `ticks` ticks over `span`."""
    raw = max(span, 1e-9) / ticks
    power = 10 ** math.floor(math.log10(raw))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= raw))


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def brake_curves_svg(curves: dict[str, Any], *, title: str, values: dict[str, Any] | None = None) -> str:
    """The SVG text of one brake run: `curves` is the item's process data (`curve_data()`), `values`
    the item's values (for F_max and the largest difference; B0's axles have their own maxima)."""
    values = values or {}
    left: list[float] = list(curves.get("left_force_dan") or [])
    right: list[float] = list(curves.get("right_force_dan") or [])
    rate_hz = float(curves.get("sample_rate_hz") or 100)
    count = max(len(left), len(right), 2)
    t_max = (count - 1) / rate_hz
    f_max = max([*left, *right, 1.0]) * 1.1
    f_min = min([*left, *right, 0.0])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    sx, sy = plot_w / t_max, plot_h / (f_max - f_min)

    def px(t_s: float, force_dan: float) -> tuple[float, float]:
        return LEFT + t_s * sx, TOP + (f_max - force_dan) * sy

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    start, end = curves.get("braking_start_index"), curves.get("window_end_index")
    if start is not None and end is not None:  # the imbalance window, from the start of braking
        x0, _ = px(start / rate_hz, 0)
        x1, _ = px(end / rate_hz, 0)
        out.append(f'<rect id="window" data-start-s="{_fmt(start / rate_hz)}" data-end-s="{_fmt(end / rate_hz)}" '
                   f'x="{x0:.1f}" y="{TOP}" width="{max(x1 - x0, 1):.1f}" height="{plot_h}" fill="#eeeeee"/>')
        out.append(f'<text x="{x0 + 3:.1f}" y="{TOP + plot_h - 16}" fill="#666">window</text>')
    prompt = curves.get("prompt_index")
    if prompt is not None:
        x, _ = px(prompt / rate_hz, 0)
        out.append(f'<line id="prompt" x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + plot_h}" stroke="#999" '
                   f'stroke-dasharray="2,3"/><text x="{x + 3:.1f}" y="{TOP + plot_h - 4}" fill="#666">brake</text>')
    # axes, ticks and labels
    out.append(f'<g stroke="#333"><line x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" y2="{TOP + plot_h}"/>'
               f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}"/></g>')
    step = _nice_step(t_max)
    for k in range(int(t_max / step) + 1):
        x, y = px(k * step, f_min)
        out.append(f'<text x="{x:.1f}" y="{y + 14:.1f}" text-anchor="middle">{_fmt(k * step)}</text>')
    out.append(f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle">time, s</text>')
    step = _nice_step(f_max - f_min)
    for k in range(math.ceil(f_min / step), int(f_max / step) + 1):
        x, y = px(0, k * step)
        out.append(f'<text x="{x - 4:.1f}" y="{y + 4:.1f}" text-anchor="end">{_fmt(k * step)}</text>'
                   f'<line x1="{x:.1f}" y1="{y:.1f}" x2="{x + plot_w:.1f}" y2="{y:.1f}" stroke="#f0f0f0"/>')
    out.append(f'<text transform="translate(14 {TOP + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle">'
               f'brake force, daN</text>')
    # the curves, in data units (s, daN) under one transform: the points are the result's samples
    transform = f"translate({LEFT} {TOP + f_max * sy:.4f}) scale({sx:.6f} {-sy:.6f})"
    for side, series in (("left", left), ("right", right)):
        points = " ".join(f"{_fmt(i / rate_hz)},{_fmt(v)}" for i, v in enumerate(series))
        out.append(f'<polyline id="{side}" data-sample-rate-hz="{_fmt(rate_hz)}" transform="{transform}" '
                   f'points="{points}" fill="none" stroke="{COLOURS[side]}" stroke-width="1.5" '
                   f'vector-effect="non-scaling-stroke"/>')
    # F_max of each side, and the point of largest difference
    for side, series in (("left", left), ("right", right)):
        index = curves.get(f"{side}_max_index")
        if index is None or index >= len(series):
            continue
        shown = values.get(f"{side}_max_force_dan", series[index])
        x, y = px(index / rate_hz, series[index])
        anchor, dx = ("end", -8) if x > LEFT + 0.6 * plot_w else ("start", 8)
        out.append(f'<circle id="{side}-max" data-time-s="{_fmt(index / rate_hz)}" data-force-dan="{_fmt(shown)}" '
                   f'cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{COLOURS[side]}"/>'
                   f'<text x="{x + dx:.1f}" y="{y - 6 if side == "left" else y + 14:.1f}" text-anchor="{anchor}" '
                   f'fill="{COLOURS[side]}">F_max {side} {_fmt(shown)} daN</text>')
    point = values.get("max_difference_point")
    if point:
        xa, ya = px(point["time_s"], point["left_force_dan"])
        _, yb = px(point["time_s"], point["right_force_dan"])
        diff = values.get("max_difference_dan")
        anchor, dx = ("end", -6) if xa > LEFT + 0.6 * plot_w else ("start", 6)
        out.append(f'<g id="max-difference" data-time-s="{_fmt(point["time_s"])}" data-difference-dan="{diff}">'
                   f'<line x1="{xa:.1f}" y1="{ya:.1f}" x2="{xa:.1f}" y2="{yb:.1f}" stroke="black" stroke-width="2"/>'
                   f'<text x="{xa + dx:.1f}" y="{(ya + yb) / 2 + 4:.1f}" text-anchor="{anchor}">'
                   f'largest difference {diff} daN</text></g>')
    legend_x = LEFT + 10
    for k, side in enumerate(("left", "right")):
        y = TOP + 14 + 14 * k
        out.append(f'<line x1="{legend_x}" y1="{y - 4}" x2="{legend_x + 20}" y2="{y - 4}" '
                   f'stroke="{COLOURS[side]}" stroke-width="2"/><text x="{legend_x + 24}" y="{y}">{side} wheel</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _title(item: dict[str, Any], curves: dict[str, Any]) -> str:
    test = "parking brake" if curves.get("test") == "parking" else "service brake"
    return f"{item.get('code')} {test}, axle {curves.get('axle_no')}: {item.get('verdict')}"


def write_brake_figures(items: list[dict[str, Any]], state_dir: Path, inspection_no: str) -> None:
    """Write each brake item's curves (B{n}; B0 one per parking axle) as SVG into
    `{state_dir}/inspections/{inspection_no}/`, and list them in the item's `figures`."""
    folder = Path("inspections") / inspection_no
    for item in items:
        data = item.get("process_data") or {}
        runs: list[dict[str, Any]] = (data.get("axles") or [] if "axles" in data
                                      else [data] if data.get("left_force_dan") is not None else [])
        figures = []
        for curves in runs:
            text = brake_curves_svg(curves, title=_title(item, curves),
                                    values=item.get("values") if "axles" not in data else None)
            name = f"{item['code']}-axle{curves.get('axle_no')}-{curves.get('test')}.svg"
            (state_dir / folder).mkdir(parents=True, exist_ok=True)
            (state_dir / folder / name).write_text(text, encoding="utf-8")
            figures.append({"kind": "brake_curves", "axle_no": curves.get("axle_no"), "path": str(folder / name),
                            "sha256": hashlib.sha256(text.encode()).hexdigest()})
        if figures:
            item["figures"] = figures
