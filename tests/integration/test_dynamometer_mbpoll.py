"""A third-party Modbus master, mbpoll (libmodbus), reads and writes the simulated CD-1 as the manual says.

Command lines (also for the docs):
    mbpoll -m tcp -p PORT -a 1 -0 -t 3 -r 0 -c 20 -1 127.0.0.1       input registers 0..19
    mbpoll -m tcp -p PORT -a 1 -0 -t 4 -r 2 127.0.0.1 1216           FORCE_TARGET = 1216 N (FC06)
    mbpoll -m tcp -p PORT -a 1 -0 -t 0 -r 0 127.0.0.1 1              LIFT = 1 (FC05)
    mbpoll -m rtu -b 19200 -P none -a 1 -0 -t 3 -r 0 -c 20 -1 LINK   the same over the RTU pty
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from simulators.dynamometer import DynamometerSimulator

pytestmark = pytest.mark.integration


async def mbpoll(*args: str, ok: bool = True) -> tuple[dict[int, int], str]:
    """Run mbpoll once; its `[reference]: value` lines as a dict, and its whole output."""
    process = await asyncio.create_subprocess_exec(
        "mbpoll", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 10)
    text = out.decode() + err.decode()
    if ok:
        assert process.returncode == 0, text
    values = {int(m[1]): int(m[2]) for m in re.finditer(r"^\[(\d+)\]:\s+(-?\d+)", out.decode(), re.MULTILINE)}
    return values, text


def tcp(sim: DynamometerSimulator, *args: str) -> list[str]:
    return ["-m", "tcp", "-p", str(sim.tcp_port), "-a", "1", "-0", *args]


async def test_mbpoll_reads_the_map_writes_a_target_and_is_refused_by_an_interlock_over_tcp() -> None:
    async with DynamometerSimulator("asm-car", tcp=("127.0.0.1", 0), fast=True) as sim:
        await asyncio.sleep(0.3)  # three samples at 10 Hz
        words, _ = await mbpoll(*tcp(sim, "-t", "3", "-r", "0", "-c", "20", "-1", "127.0.0.1"))
        assert sorted(words) == list(range(20))
        # at rest: SPEED 0, IDLE, no fault, 10 Hz, ring 512, CD-1L: 150.0 kW, 8000 N, 130.00 km/h
        assert [words[0], words[11], words[12], words[14], words[15]] == [0, 0, 0, 10, 512]
        assert [words[17], words[18], words[19]] == [1500, 8000, 13000]
        assert 2 <= words[13] <= sim.model.sample_index

        await mbpoll(*tcp(sim, "-t", "4", "-r", "2", "127.0.0.1", "1216"))  # FORCE_TARGET 1216 N
        holding, _ = await mbpoll(*tcp(sim, "-t", "4", "-r", "0", "-c", "12", "-1", "127.0.0.1"))
        assert holding == {0: 0, 1: 0, 2: 1216, 3: 0, 4: 0, 5: 910, 6: 0, 7: 500, 8: 1200, 9: 120, 10: 6000, 11: 20}

        await mbpoll(*tcp(sim, "-t", "4", "-r", "2", "127.0.0.1", "8001"), ok=False)  # above RATED_FORCE
        assert sim.model.holding[2] == 1216  # a refused write changes nothing

        await sim_wait(lambda: sim.model.rollers_stopped)
        await mbpoll(*tcp(sim, "-t", "0", "-r", "2", "127.0.0.1", "1"))  # PAU_ENABLE = 1
        await mbpoll(*tcp(sim, "-t", "0", "-r", "0", "127.0.0.1", "1"))  # LIFT = 1: the lift leaves the bottom
        await asyncio.sleep(0.1)
        _, text = await mbpoll(*tcp(sim, "-t", "4", "-r", "0", "127.0.0.1", "2"), ok=False)  # CONTROL_MODE 2
    assert "busy" in text.lower()  # exception 06, "Slave device or server is busy"
    assert sim.model.control_mode == 0


async def sim_wait(condition: object, timeout_s: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met"
        await asyncio.sleep(0.05)


async def test_mbpoll_watchdog_drop_over_tcp() -> None:
    """Mode on, then nobody talks for longer than WATCHDOG: FAULT_CODE 8, CONTROL_MODE back to 0."""
    async with DynamometerSimulator("asm-car", tcp=("127.0.0.1", 0), fast=True) as sim:
        await sim_wait(lambda: sim.model.rollers_stopped)
        await mbpoll(*tcp(sim, "-t", "4", "-r", "11", "127.0.0.1", "5"))  # WATCHDOG 0.5 s
        await mbpoll(*tcp(sim, "-t", "0", "-r", "2", "127.0.0.1", "1"))  # PAU_ENABLE = 1
        await mbpoll(*tcp(sim, "-t", "4", "-r", "0", "127.0.0.1", "2"))  # CONTROL_MODE 2: accepted
        assert sim.model.control_mode == 2
        await asyncio.sleep(1.0)  # silence: twice WATCHDOG
        words, _ = await mbpoll(*tcp(sim, "-t", "3", "-r", "11", "-c", "2", "-1", "127.0.0.1"))
        mode, _ = await mbpoll(*tcp(sim, "-t", "4", "-r", "0", "-c", "1", "-1", "127.0.0.1"))
        inputs, _ = await mbpoll(*tcp(sim, "-t", "1", "-r", "0", "-c", "8", "-1", "127.0.0.1"))
    assert words == {11: 4, 12: 8}  # STATE FAULT, FAULT_CODE 8 host watchdog
    assert mode == {0: 0}
    assert inputs[5] == 0 and inputs[7] == 1  # PAU_READY 0, FAULT 1


async def test_mbpoll_over_rtu_reads_the_map_and_is_refused_by_an_interlock(tmp_path: Path) -> None:
    link = tmp_path / "cd1"
    rtu = ["-m", "rtu", "-b", "19200", "-P", "none", "-a", "1", "-0"]
    async with DynamometerSimulator("asm-car", link=link, fast=True) as sim:
        words, _ = await mbpoll(*rtu, "-t", "3", "-r", "0", "-c", "20", "-1", str(link))
        assert [words[14], words[15], words[17], words[18], words[19]] == [10, 512, 1500, 8000, 13000]
        await mbpoll(*rtu, "-t", "4", "-r", "3", str(link), "3000", "200")  # SPEED_TARGET 30.00, SPEED_RAMP 2.00
        assert sim.model.holding[3:5] == [3000, 200]
        sim.do("hold_speed", speed_kmh=20)
        await sim_wait(lambda: sim.model.speed_kmh > 5)
        _, text = await mbpoll(*rtu, "-t", "0", "-r", "0", str(link), "1", ok=False)  # LIFT = 1, rollers turning
    assert "busy" in text.lower()
    assert not sim.model.coils[0]
