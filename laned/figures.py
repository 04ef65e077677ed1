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

import structlog

from laned.private_files import private_dir, write_private

log = structlog.get_logger("laned.figures")

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
    for item in items:
        data = item.get("process_data") or {}
        runs: list[dict[str, Any]] = (data.get("axles") or [] if "axles" in data
                                      else [data] if data.get("left_force_dan") is not None else [])
        figures = []
        for curves in runs:
            text = brake_curves_svg(curves, title=_title(item, curves),
                                    values=item.get("values") if "axles" not in data else None)
            name = f"{item['code']}-axle{curves.get('axle_no')}-{curves.get('test')}.svg"
            figures.append(_write(state_dir, inspection_no, name, text, kind="brake_curves",
                                  axle_no=curves.get("axle_no")))
        if figures:
            item["figures"] = figures


# ----- the loaded emissions methods: ASM per phase, lug-down ---------------------------------------
# Stacked panels, each in its data's own units under one transform (like the brake curves): the
# polyline points are the item's process-data values themselves (rows without a value are left out).

PANEL_H, PANEL_GAP = 96, 34  # px
Series = tuple[str, str, list[tuple[float, float]], bool]  # id, colour, (x, y) points, dashed


class _Panel:
    """One panel of a stacked figure: axes, ticks and the `px()` transform of its data ranges."""

    def __init__(self, out: list[str], top: float, x_range: tuple[float, float], ys: list[float],
                 y_label: str) -> None:
        self.out, self.top = out, top
        self.x0, x1 = x_range
        lo, hi = min([*ys, 0.0]), max([*ys, 1e-9])
        pad = (hi - lo) * 0.08 or 1.0
        self.y0, self.y1 = (lo - pad if lo < 0 else lo), hi + pad
        self.w, self.h = WIDTH - LEFT - RIGHT, PANEL_H
        self.sx = self.w / max(x1 - self.x0, 1e-9)
        self.sy = self.h / (self.y1 - self.y0)
        bottom = top + self.h
        out.append(f'<g stroke="#333"><line x1="{LEFT}" y1="{bottom}" x2="{LEFT + self.w}" y2="{bottom}"/>'
                   f'<line x1="{LEFT}" y1="{top}" x2="{LEFT}" y2="{bottom}"/></g>')
        step = _nice_step(x1 - self.x0, 10)
        for k in range(math.ceil(self.x0 / step), int(x1 / step) + 1):
            x, _ = self.px(k * step, self.y0)
            out.append(f'<text x="{x:.1f}" y="{bottom + 12:.1f}" text-anchor="middle">{_fmt(k * step)}</text>')
        step = _nice_step(self.y1 - self.y0, 3)
        for k in range(math.ceil(self.y0 / step), int(self.y1 / step) + 1):
            _, y = self.px(self.x0, k * step)
            out.append(f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{_fmt(k * step)}</text>'
                       f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + self.w}" y2="{y:.1f}" stroke="#f0f0f0"/>')
        out.append(f'<text x="{LEFT + 4}" y="{top - 4}" font-weight="bold">{escape(y_label)}</text>')

    def px(self, x: float, y: float) -> tuple[float, float]:
        return LEFT + (x - self.x0) * self.sx, self.top + (self.y1 - y) * self.sy

    def band(self, ident: str, lo: float, hi: float, label: str) -> None:
        """A horizontal band (a tolerance) or, with lo == hi, a limit line."""
        _, ya = self.px(self.x0, hi)
        _, yb = self.px(self.x0, lo)
        if lo == hi:
            self.out.append(f'<line id="{ident}" data-value="{_fmt(lo)}" x1="{LEFT}" y1="{ya:.1f}" '
                            f'x2="{LEFT + self.w}" y2="{ya:.1f}" stroke="#d62728" stroke-dasharray="6,3"/>')
        else:
            self.out.append(f'<rect id="{ident}" data-low="{_fmt(lo)}" data-high="{_fmt(hi)}" x="{LEFT}" '
                            f'y="{ya:.1f}" width="{self.w}" height="{max(yb - ya, 1):.1f}" fill="#e8f4e8"/>')
        self.out.append(f'<text x="{LEFT + self.w - 2}" y="{ya - 2:.1f}" text-anchor="end" fill="#666">'
                        f'{escape(label)}</text>')

    def window(self, ident: str, first: float, last: float, label: str) -> None:
        """A shaded span of x (a judged window), first … last inclusive of whole seconds."""
        xa, _ = self.px(first - 0.5, self.y0)
        xb, _ = self.px(last + 0.5, self.y0)
        self.out.append(f'<rect id="{ident}" data-first="{_fmt(first)}" data-last="{_fmt(last)}" x="{xa:.1f}" '
                        f'y="{self.top}" width="{max(xb - xa, 1):.1f}" height="{self.h}" fill="#eeeeee"/>'
                        f'<text x="{xa + 2:.1f}" y="{self.top + 11}" fill="#666">{escape(label)}</text>')

    def lines(self, series: list[Series]) -> None:
        transform = (f"translate({LEFT - self.x0 * self.sx:.4f} {self.top + self.y1 * self.sy:.4f}) "
                     f"scale({self.sx:.6f} {-self.sy:.6f})")
        for ident, colour, points, dashed in series:
            text = " ".join(f"{_fmt(x)},{_fmt(y)}" for x, y in points)
            dash = ' stroke-dasharray="4,3"' if dashed else ""
            self.out.append(f'<polyline id="{ident}" transform="{transform}" points="{text}" fill="none" '
                            f'stroke="{colour}" stroke-width="1.5" vector-effect="non-scaling-stroke"{dash}/>')


def _points(rows: list[dict[str, Any]], x_key: str, y_key: str) -> list[tuple[float, float]]:
    return [(float(r[x_key]), float(r[y_key])) for r in rows
            if r.get(x_key) is not None and r.get(y_key) is not None]


def _stacked(title: str, panels: int) -> tuple[list[str], int]:
    height = int(_panel_top(panels)) + 4  # room for the caption under the last panel
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
    ], height


def _panel_top(k: int) -> float:
    return TOP + 14 + k * (PANEL_H + PANEL_GAP)


ASM_NOMINAL_KMH = {"ASM5025": 25.0, "ASM2540": 40.0}
ASM_GASES = (("hc", "HC corrected, ppm", "hc_corrected_ppm", "hc_avg_ppm"),
             ("co", "CO corrected, %", "co_corrected_pct", "co_avg_pct"),
             ("no", "NO corrected, ppm", "no_corrected_ppm", "no_avg_ppm"))


def _second_of(rows: list[dict[str, Any]], t: int) -> int | None:
    """The phase second (x) of clock time `t` in the last clock run (after the last restart)."""
    found = [r["second"] for r in rows if r.get("t") == t]
    return found[-1] if found else None


def asm_trace_svg(item: dict[str, Any], mode: str) -> str:
    """The SVG text of one ASM phase run (`mode` ASM5025 or ASM2540) of a WT item: speed with its band,
    force with FORCE_TARGET ± tolerance, the corrected HC, CO and NO per second (solid) and their 10 s
    moving averages (dashed) with the limits; the fast-check window and the judged window shaded.
    x is the phase's second (fed seconds, from 1); the clock t restarts on a restart, the second does not."""
    settings = item.get("settings") or {}
    values = (item.get("values") or {}).get(mode.lower()) or {}
    rows = [r for r in (item.get("process_data") or {}).get("rows") or []
            if r.get("phase") == mode and r.get("second") is not None]
    seconds = [float(r["second"]) for r in rows] or [1.0]
    x_range = (min(seconds) - 0.5, max(seconds) + 0.5)
    title = f"{item.get('code')} {mode}: {values.get('decision', '')}"
    out, _ = _stacked(title, 5)
    windows: list[tuple[str, int, int, str]] = []
    response_s, fast_s = int(settings.get("response_s", 10)), int(settings.get("fast_window_s", 10))
    fast = (_second_of(rows, response_s + 1), _second_of(rows, response_s + fast_s))
    if fast[0] is not None and fast[1] is not None:
        windows.append(("fast-window", fast[0], fast[1], f"fast check t = {response_s + 1}…{response_s + fast_s}"))
    judged = values.get("window_t")
    if judged and values.get("decision") in ("pass", "fail"):
        span = (_second_of(rows, judged[0]), _second_of(rows, judged[1]))
        if span[0] is not None and span[1] is not None:
            windows.append(("result-window", span[0], span[1], f"result t = {judged[0]}…{judged[1]}"))

    def panel(k: int, ident: str, label: str, keys: tuple[str, ...], extra: list[float]) -> _Panel:
        series = [(f"{ident}-avg" if n else ident, "#1f77b4", _points(rows, "second", key), n > 0)
                  for n, key in enumerate(keys)]
        p = _Panel(out, _panel_top(k), x_range, [y for _, _, pts, _ in series for _, y in pts] + extra, label)
        for wid, first, last, text in windows:
            p.window(f"{ident}-{wid}", first, last, text if k == 0 else "")
        return p

    nominal = ASM_NOMINAL_KMH.get(mode, 0.0)
    tol = float(settings.get("speed_tolerance_kmh", 2.0))
    p = panel(0, "speed", "speed, km/h", ("speed_kmh",), [nominal + tol])
    p.band("speed-band", nominal - tol, nominal + tol, f"{_fmt(nominal)} ± {_fmt(tol)} km/h")
    p.lines([("speed", "#1f77b4", _points(rows, "second", "speed_kmh"), False)])
    target = values.get("force_target_n") or next((r["force_target_n"] for r in rows if r.get("force_target_n")), 0)
    tol = float(target) * float(settings.get("force_tolerance_pct", 5.0)) / 100
    p = panel(1, "force", "force, N", ("force_n",), [float(target) + tol])
    p.band("force-band", float(target) - tol, float(target) + tol, f"FORCE_TARGET {target} N ± {_fmt(tol)} N")
    p.lines([("force", "#1f77b4", _points(rows, "second", "force_n"), False)])
    for k, (gas, label, key, avg) in enumerate(ASM_GASES, start=2):
        limit = ((item.get("limits") or {}).get(f"{mode.lower()}_{gas}") or {}).get("value")
        p = panel(k, gas, label, (key, avg), [] if limit is None else [float(limit)])
        if limit is not None:
            p.band(f"{gas}-limit", float(limit), float(limit), f"limit {_fmt(float(limit))}")
        p.lines([(gas, "#1f77b4", _points(rows, "second", key), False),
                 (f"{gas}-avg", "#ff7f0e", _points(rows, "second", avg), True)])
    out.append(f'<text x="{LEFT + (WIDTH - LEFT - RIGHT) / 2:.1f}" y="{_panel_top(5) - 6:.1f}" '
               f'text-anchor="middle">second of the phase (solid: per second; dashed: 10 s moving average)</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


LUG_POINTS = ((2, "point_100", "100 %"), (3, "point_80", "80 %"))


def lug_down_trace_svg(item: dict[str, Any]) -> str:
    """The SVG text of a JZJS item: wheel power over speed during the scan with Pmax at VelMaxHP; then
    K and NOx per second at the 100 % and 80 % points (x: seconds since the first point second), each
    point's measuring window shaded with its K and NOx, and the limits."""
    values = item.get("values") or {}
    limits = item.get("limits") or {}
    all_rows = (item.get("process_data") or {}).get("rows") or []
    scan = [r for r in all_rows if r.get("stage") == 0 and r.get("part") == "scan"]
    out, _ = _stacked(f"{item.get('code')} lug-down: {item.get('verdict')}", 3)
    speeds = [float(r["speed_kmh"]) for r in scan if r.get("speed_kmh") is not None] or [0.0, 1.0]
    powers = [float(r["power_kw"]) for r in scan if r.get("power_kw") is not None]
    p = _Panel(out, _panel_top(0), (min(speeds), max(speeds)), powers, "wheel power, kW, over speed, km/h (scan)")
    p.lines([("scan-power", "#1f77b4", _points(scan, "speed_kmh", "power_kw"), False)])
    pmax, vel = values.get("pmax_kw"), values.get("vel_max_hp_kmh")
    if pmax is not None and vel is not None:
        x, y = p.px(vel, pmax)
        out.append(f'<circle id="pmax" data-speed-kmh="{_fmt(vel)}" data-power-kw="{_fmt(pmax)}" cx="{x:.1f}" '
                   f'cy="{y:.1f}" r="4" fill="#d62728"/><text x="{x + 6:.1f}" y="{y - 6:.1f}" fill="#d62728">'
                   f'Pmax {_fmt(pmax)} kW at VelMaxHP {_fmt(vel)} km/h</text>')
    # the points: rows in order, x = seconds since the first point row; each point's own second n is
    # its n-th row (the window counts seconds from the target's write, as the point was fed)
    point_rows = [r for r in all_rows if r.get("stage") in (2, 3)]
    x_of = {id(r): float(n) for n, r in enumerate(point_rows, start=1)}
    xs = list(x_of.values()) or [1.0]
    for k, (key, label, limit_key) in enumerate((("k_m1", "K, m⁻¹", "lug_down_k100"),
                                                 ("nox_ppm", "NOx, ppm", "lug_down_nox80")), start=1):
        limit = (limits.get(limit_key) or {}).get("value")
        ys = [float(r[key]) for r in point_rows if r.get(key) is not None] + ([] if limit is None else [limit])
        p = _Panel(out, _panel_top(k), (min(xs) - 0.5, max(xs) + 0.5), ys, label)
        for stage, name, text in LUG_POINTS:
            mine = [r for r in point_rows if r["stage"] == stage]
            point = values.get(name) or {}
            window = point.get("window_s")
            if window and len(mine) >= window[1]:
                shown = f"K {point.get('k_m1')} m⁻¹" if key == "k_m1" else f"NOx {point.get('nox_ppm')} ppm"
                p.window(f"{key}-{name}", x_of[id(mine[window[0] - 1])], x_of[id(mine[window[1] - 1])],
                         f"{text}: {shown}")
        if limit is not None:
            p.band(f"{key}-limit", float(limit), float(limit), f"limit {_fmt(float(limit))}")
        p.lines([(key, "#1f77b4", [(x_of[id(r)], float(r[key])) for r in point_rows if r.get(key) is not None],
                  False)])
    out.append(f'<text x="{LEFT + (WIDTH - LEFT - RIGHT) / 2:.1f}" y="{_panel_top(3) - 6:.1f}" '
               f'text-anchor="middle">K and NOx: seconds at the points (100 % then 80 % of VelMaxHP)</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _write(state_dir: Path, inspection_no: str, name: str, text: str, **fields: Any) -> dict[str, Any]:
    """One figure beside the inspection record, private like every file of the state directory
    (0700 folder, 0600 file, whatever the umask); its `figures` entry (path relative to state_dir)."""
    folder = Path("inspections") / inspection_no
    private_dir(state_dir / folder)
    data = text.encode("utf-8")
    write_private(state_dir / folder / name, data)
    return {**fields, "path": str(folder / name), "sha256": hashlib.sha256(data).hexdigest()}


def write_loaded_figures(items: list[dict[str, Any]], state_dir: Path, inspection_no: str) -> None:
    """Write the ASM item's trace per phase run (`WT-asm5025.svg`, `WT-asm2540.svg`) and the lug-down
    item's (`JZJS-lug-down.svg`) into `{state_dir}/inspections/{inspection_no}/`, and list them in the
    item's `figures`. A phase not run, or a test void before any second, gets no picture."""
    for item in items:
        rows = (item.get("process_data") or {}).get("rows") or []
        figures = []
        if item.get("code") == "WT":
            for mode in ("ASM5025", "ASM2540"):
                if any(r.get("phase") == mode and r.get("second") is not None for r in rows):
                    figures.append(_write(state_dir, inspection_no, f"WT-{mode.lower()}.svg",
                                          asm_trace_svg(item, mode), kind="asm_trace", phase=mode))
        elif item.get("code") == "JZJS" and rows:
            figures.append(_write(state_dir, inspection_no, "JZJS-lug-down.svg", lug_down_trace_svg(item),
                                  kind="lug_down_trace"))
        if figures:
            item["figures"] = figures


def write_report_figures(items: list[dict[str, Any]], state_dir: Path | str | None, inspection_no: str, *,
                         procedure: str) -> None:
    """The pictures of a procedure's items (brake curves, ASM and lug-down traces) beside the record,
    before the result is built; never at the cost of the result: a figure that cannot be drawn or
    written is logged (`{procedure}_figures_not_written`) and the items go on without it."""
    if state_dir is None:
        return
    try:
        write_brake_figures(items, Path(state_dir), inspection_no)
        write_loaded_figures(items, Path(state_dir), inspection_no)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.error(f"{procedure}_figures_not_written", inspection_no=inspection_no, error=str(exc))
