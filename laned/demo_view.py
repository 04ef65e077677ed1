"""What `laned demo` shows on the terminal: the station's view of the lane."""

from __future__ import annotations

import itertools
import json
import sys
import time
import unicodedata
from typing import Any

COLUMN = 60
LIVE_FIELDS = {
    "gas-analyzer": ("hc_ppm", "co_pct", "co2_pct", "o2_pct", "lambda_value", "rpm"),
    "opacimeter": ("k_m1", "opacity_pct", "rpm"),
    "brake-tester": ("left_force_n", "right_force_n", "left_load_n", "right_load_n", "state"),
}


def width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def pad(text: str, size: int) -> str:
    """`text` in exactly `size` terminal cells; a cut text ends in '…' so that nothing looks whole that is not."""
    if width(text) > size:
        while width(text) > size - 1:
            text = text[:-1]
        text += "…"
    return text + " " * (size - width(text))


#: the values an item line shows (the first three present), each as a label and its unit: the
#: key names' unit suffixes made lines too wide for a column of the side-by-side view
ITEM_VALUES = {
    "brake_rate_pct": ("brake", "%"), "axle_brake_rate_pct": ("axle", "%"), "imbalance_pct": ("imbalance", "%"),
    "rate_pct": ("rate", "%"), "mean_k_m1": ("K", "m⁻¹"), "idle_co_pct": ("CO", "%"), "idle_hc_ppm": ("HC", "ppm"),
    "high_idle_co_pct": ("high CO", "%"), "high_idle_hc_ppm": ("high HC", "ppm"), "lambda": ("λ", ""),
    "k100_m1": ("K100", "m⁻¹"), "k80_m1": ("K80", "m⁻¹"), "nox80_ppm": ("NOx80", "ppm"),
}


def item_line(item: dict[str, Any]) -> str:
    values = item.get("values") or {}
    shown = [f"{label} {values[key]}{' ' + unit if unit else ''}" for key, (label, unit) in ITEM_VALUES.items()
             if values.get(key) is not None]
    idle, high = values.get("idle"), values.get("high_idle")
    if isinstance(idle, dict) and isinstance(high, dict):  # two-speed idle: low / high idle, as on a report
        shown = [f"CO {idle.get('co_pct')}/{high.get('co_pct')} %", f"HC {idle.get('hc_ppm')}/{high.get('hc_ppm')} ppm",
                 f"λ {values.get('lambda_analyzer')}"]
    phases = [values[mode] for mode in ("asm5025", "asm2540") if isinstance(values.get(mode), dict)]
    ran = [p for p in phases if p.get("decision") not in (None, "not_run")]
    if ran:  # ASM: the last phase run's corrected HC / CO / NO, as judged
        last = ran[-1]
        shown = [f"HC {last.get('hc_ppm')} ppm", f"CO {last.get('co_pct')} %", f"NO {last.get('no_ppm')} ppm"]
    reason = f" — {item['reason']}" if item.get("reason") else ""
    return f"{item['code']:<5}{item['verdict']:<14}{'  '.join(shown[:3])}{reason}"


def result_lines(result: dict[str, Any]) -> list[str]:
    kind = result["schema"].split("/")[0].removeprefix("result-")
    vehicle = result["vehicle"]
    lines = [
        f"{kind.upper()} RESULT  verdict {result['verdict'].upper()}",
        f"{vehicle['plate']}  {vehicle['vin']}",
        f"id {result['result_id'][:18]}…  signed {result['signature']['key_id'][:8]}",
        f"photos: {', '.join(p['code'] or p['photo'] for p in result['photos'])}",
    ]
    lines += [item_line(item) for item in result["items"]]
    if result.get("aborted"):
        lines.append(f"aborted: {result['aborted']}")
    fields = list(result["platform_record"])[:6]
    lines.append("platform fields: " + ", ".join(fields) + ", …")
    return lines


class Screen:
    def __init__(self, plain: bool, stream: Any = None) -> None:
        self.plain = plain
        self.stream = stream or sys.stdout
        self.last_live: dict[str, float] = {}
        self.last_status: str | None = None

    def print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def banner(self, text: str) -> None:
        self.print(f"\n=== {text}")

    def show(self, topic: str, doc: dict[str, Any]) -> None:
        kind = "/".join(topic.split("/")[4:])
        if self.plain:
            if not kind.startswith("live/") and not kind.startswith("result/"):
                self.print(f"{topic} {json.dumps(doc, ensure_ascii=False)[:240]}")
            return
        if kind == "status":
            devices = ", ".join(f"{n} {d['state']}" for n, d in doc.get("devices", {}).items())
            inspection = doc.get("inspection") or {}
            line = f"lane {doc.get('state')}: {devices}" + (
                f"; inspection {inspection.get('inspection_no')}" if inspection else "")
            if line != self.last_status:
                self.last_status = line
                self.print(f"  [status] {line}")
        elif kind == "event":
            marks = {"prompt": ">>", "warning": "!!", "step_started": "--", "step_finished": "ok"}
            mark = marks.get(doc.get("type", ""), "..")
            text = doc.get("text") or doc.get("type")
            action = f" [{doc['action']}]" if doc.get("action") else ""
            self.print(f"  {mark} {doc.get('step') or '':<28}{text}{action}")
        elif kind.startswith("live/"):
            device = kind.split("/", 1)[1]
            now = time.monotonic()
            if now - self.last_live.get(device, 0) >= 2.0:
                self.last_live[device] = now
                fields = LIVE_FIELDS.get(device, ())
                values = " ".join(f"{f}={doc[f]}" for f in fields if f in doc)
                self.print(f"     live {device}: {values}")
        elif kind.startswith("reply/"):
            verdict = "accepted" if doc.get("accepted") else "REFUSED: " + "; ".join(doc.get("reasons", []))
            self.print(f"  [reply] {doc.get('command')} {verdict}")
        elif kind.startswith("pda/ack/"):
            state = "complete" if doc.get("complete") else f"waiting for {', '.join(doc.get('missing_photos') or [])}"
            if not doc.get("accepted"):
                state = "refused: " + "; ".join(e["error"] for e in doc.get("errors", []))
            self.print(f"  [pda] capture {doc.get('capture_id', '')[:8]} {state}")

    def results(self, safety: dict[str, Any], emissions: dict[str, Any]) -> None:
        left, right = result_lines(safety), result_lines(emissions)
        if self.plain:
            for line in left + right:
                self.print(line)
            return
        self.print("")
        self.print(pad("-" * (COLUMN - 2), COLUMN) + "-" * (COLUMN - 2))
        for a, b in itertools.zip_longest(left, right, fillvalue=""):
            self.print(pad(a, COLUMN - 2) + "  " + b)
        self.print(pad("-" * (COLUMN - 2), COLUMN) + "-" * (COLUMN - 2))

    def summary(self, problems: list[str]) -> None:
        if problems:
            self.print("\nlaned demo FAILED:")
            for problem in problems:
                self.print(f"  - {problem}")
        else:
            self.print("\nlaned demo OK: every inspection ended with its safety and its emissions result.")
