"""The loaded methods' oil-temperature precondition: the engine warm before the test starts.

standards.md: ASM needs oil at least 80 °C where an oil probe is fitted, lug-down "engine warm
(oil at least 80 °C where measured)"; both a setting (`oil_temp_min_c`) with a skip switch
(`oil_temp_check`) and a wait (`oil_temp_timeout_s`, scaled by the lane's time_scale). The
oil temperature comes from the device's readings: the gas analyzer's `oil_temp_c` for ASM, the
opacimeter's `oil_temp_k` for lug-down; a reading without one means no probe is fitted.

- check off: skipped, the record says so (with the oil temperature if one is reported);
- no probe: skipped, the record says so;
- warm: recorded;
- cold: the driver is told to warm the engine (prompt `warm_engine`) and the lane waits for the
  minimum; still cold after the wait: ProcedureError naming the temperature and the limit (the
  item ends not completed, like the other unmet preconditions).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog

from laned.procedures import InspectionContext, ProcedureError

log = structlog.get_logger("laned.procedures.oil_temp")

FIRST_READING_S = 10.0  # real: the feed's first reading (the driver polls several times a second)
KELVIN = 273.15


def oil_c_of_analyzer(reading: Any) -> float | None:
    """The gas analyzer's oil temperature (°C; None: no probe)."""
    value = getattr(reading, "oil_temp_c", None)
    return None if value is None else float(value)


def oil_c_of_opacimeter(reading: Any) -> float | None:
    """The opacimeter's oil temperature, K → °C (None: no probe)."""
    value = getattr(reading, "oil_temp_k", None)
    return None if value is None else round(float(value) - KELVIN, 2)


async def oil_temp_precondition(
    ctx: InspectionContext,
    feed: Any,
    oil_c: Callable[[Any], float | None],
    *,
    step: str,
    setting: str,
    settings: Any,
) -> dict[str, Any]:
    """Check (and wait for) the oil temperature on `feed`'s readings; returns the record for the
    item's `pre_checks.oil_temp`, also logged. `setting` names the settings table
    (`inspection.asm`) in the reason; `settings` has oil_temp_min_c, oil_temp_check and
    oil_temp_timeout_s."""
    record = await _check(ctx, feed, oil_c, step, setting, settings)
    log.info("oil_temp_precondition", inspection_no=ctx.inspection_no, **record)
    return record


async def _check(ctx: InspectionContext, feed: Any, oil_c: Callable[[Any], float | None], step: str, setting: str,
                 settings: Any) -> dict[str, Any]:
    minimum, device = float(settings.oil_temp_min_c), feed.driver.name
    first = await _first_reading(ctx, feed)
    measured = oil_c(first)
    base = {"device": device, "min_c": minimum}
    if not settings.oil_temp_check:
        ctx.warn(f"oil temperature not checked ({setting}.oil_temp_check = false)")
        return {**base, "run": False, "skipped": "setting", "oil_temp_c": measured}
    if measured is None:
        return {**base, "run": False, "skipped": "no_probe", "oil_temp_c": None}
    if measured >= minimum:
        return {**base, "run": True, "passed": True, "oil_temp_c": measured, "waited_s": 0.0}
    ctx.step(f"{step}.oil_temp", f"oil {measured:.1f} °C is below {minimum:g} °C: warming the engine",
             oil_temp_c=measured, min_c=minimum)
    ctx.prompt("warm_engine", f"oil {measured:.1f} °C: warm the engine until the oil reaches {minimum:g} °C "
                              f"(机油温度不足 {minimum:g} °C, 请预热发动机)", oil_temp_c=measured, min_c=minimum)
    timeout_s = float(settings.oil_temp_timeout_s)
    started = time.monotonic()
    deadline = started + ctx.scaled(timeout_s)
    while True:
        feed.check_alive()
        value = oil_c(feed.latest)
        if value is not None:
            measured = value
            if value >= minimum:
                waited = round(time.monotonic() - started, 1)
                ctx.step_done(f"{step}.oil_temp", f"oil {value:.1f} °C", oil_temp_c=value)
                return {**base, "run": True, "passed": True, "oil_temp_c": value, "waited_s": waited}
        if time.monotonic() > deadline:
            raise ProcedureError(f"oil temperature {measured:.1f} °C is below the {minimum:g} °C needed "
                                 f"({setting}.oil_temp_min_c) after {timeout_s:g} s of warming: warm the engine, "
                                 "then start again", step=ctx.current_step)
        await ctx.sleep(0.1, scaled=False)


async def _first_reading(ctx: InspectionContext, feed: Any) -> Any:
    deadline = time.monotonic() + FIRST_READING_S
    while feed.latest is None:
        feed.check_alive()
        if time.monotonic() > deadline:
            raise ProcedureError(f"{feed.driver.name}: no reading within {FIRST_READING_S:g} s for the oil "
                                 "temperature", step=ctx.current_step)
        await ctx.sleep(0.05, scaled=False)
    return feed.latest
