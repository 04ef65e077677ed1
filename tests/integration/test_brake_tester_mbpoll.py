"""A third-party Modbus master, mbpoll (libmodbus), reads the simulated RB-2 correctly.

Command lines (also for the README):
    mbpoll -m tcp -p PORT -a 1 -0 -t 3 -r 0 -c 16 -1 127.0.0.1            input registers 0..15
    mbpoll -m tcp -p PORT -a 1 -0 -t 3:int -B -r 0 -c 4 -1 127.0.0.1      forces and loads as int32
    mbpoll -m rtu -b 19200 -P none -a 1 -0 -t 3 -r 0 -c 16 -1 LINK        the same over the RTU pty
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import pytest

from simulators.brake_tester import BrakeTesterSimulator

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("mbpoll") is None, reason="mbpoll is not installed (apt-get install mbpoll)"),
]


async def mbpoll(*args: str) -> dict[int, int]:
    """Run mbpoll once; its `[reference]: value` lines as a dict (signed values as printed first)."""
    process = await asyncio.create_subprocess_exec(
        "mbpoll", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 0, err.decode() + out.decode()
    return {int(m[1]): int(m[2]) for m in re.finditer(r"^\[(\d+)\]:\s+(-?\d+)", out.decode(), re.MULTILINE)}


async def test_mbpoll_reads_the_input_registers_over_tcp() -> None:
    async with BrakeTesterSimulator("gasoline-car", tcp=("127.0.0.1", 0), fast=True, script=False) as sim:
        sim.do("drive_on", axle=1)
        await asyncio.sleep(0.1)
        port = str(sim.tcp_port)
        words = await mbpoll("-m", "tcp", "-p", port, "-a", "1", "-0", "-t", "3", "-r", "0", "-c", "16", "-1",
                             "127.0.0.1")
        longs = await mbpoll("-m", "tcp", "-p", port, "-a", "1", "-0", "-t", "3:int", "-B", "-r", "0", "-c", "4",
                             "-1", "127.0.0.1")
        newest = sim.model.sample_index
    assert sorted(words) == list(range(16))
    # forces at rest are the channels' zero offsets, +14 N and −9 N: int32 high word first
    assert [words[0], words[1], words[2], words[3]] == [0, 14, 65535, 65527]
    assert words[10] == 0 and words[11] == 0  # IDLE, no fault
    assert words[13] == 100 and words[14] == 512 and words[15] == 0
    assert 0 < words[12] <= newest
    assert longs[0] == 14 and longs[2] == -9
    assert abs(longs[4] - 4200) <= 12 and abs(longs[6] - 4100) <= 12  # axle 1 wheel loads, ±12 N noise


async def test_mbpoll_reads_the_input_registers_over_rtu(tmp_path: Path) -> None:
    link = tmp_path / "rb2"
    async with BrakeTesterSimulator("gasoline-car", link=link, fast=True, script=False):
        words = await mbpoll("-m", "rtu", "-b", "19200", "-P", "none", "-a", "1", "-0", "-t", "3", "-r", "0",
                             "-c", "16", "-1", str(link))
    assert [words[1], words[3], words[13], words[14]] == [14, 65527, 100, 512]
