"""The brake tester driver following the 100 Hz curve ring at its poll rate (live messages), over
real Modbus TCP against the simulator: every sample once and in order, and out of the way of a
recording."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from drivers.base import Backoff
from drivers.brake_tester import BrakeTesterDriver, ModbusLink, record_curve
from laned.devices import reading_to_live
from protocols import brake_tester as bt
from simulators.brake_tester import BrakeTesterSimulator

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def following(**kwargs: Any) -> AsyncIterator[tuple[BrakeTesterSimulator, BrakeTesterDriver]]:
    kwargs.setdefault("poll_hz", 10.0)
    async with BrakeTesterSimulator("gasoline-car", tcp=("127.0.0.1", 0), fast=True, script=False) as sim:
        link = ModbusLink(transport="tcp", host="127.0.0.1", tcp_port=sim.tcp_port or 0, timeout_s=0.3)
        drv = BrakeTesterDriver("brake", link, backoff=Backoff(initial_s=0.05, max_s=0.3), follow_curve=True,
                                **kwargs)
        task = asyncio.create_task(drv.run())
        try:
            await drv.wait_connected(5)
            await drv.set_lift(False, wait_s=2)  # raised on connect (the safe state); a run needs it down
            yield sim, drv
        finally:
            await drv.stop()
            await asyncio.wait_for(task, 5)


async def _running(sim: BrakeTesterSimulator, drv: BrakeTesterDriver) -> None:
    sim.do("drive_on", axle=1)
    await drv.set_motors(True)
    await drv.wait_snapshot(lambda s: s.state == bt.TesterState.RUNNING, 5, what="RUNNING")


def _followed(queue: asyncio.Queue[Any]) -> list[bt.FollowedSnapshot]:
    out = []
    while not queue.empty():
        item = queue.get_nowait()
        if isinstance(item, bt.FollowedSnapshot) and item.first_sample_index is not None:
            out.append(item)
    return out


async def test_following_delivers_every_ring_sample_once_in_order_as_the_tester_made_it() -> None:
    async with following() as (sim, drv):
        await _running(sim, drv)
        with drv.readings.subscription() as queue:
            await asyncio.sleep(1.5)
        chunks = _followed(queue)
        assert len(chunks) >= 5  # about ten a second
        produced = {s.index: s for s in sim.produced_samples()}
        expected_first = chunks[0].first_sample_index
        for chunk in chunks:
            assert chunk.first_sample_index == expected_first  # contiguous: nothing skipped or repeated
            assert len(chunk.left_force_dan) == len(chunk.right_force_dan) > 0
            for k, (left, right) in enumerate(zip(chunk.left_force_dan, chunk.right_force_dan, strict=True)):
                made = produced[(chunk.first_sample_index + k) % bt.INDEX_MODULUS]
                assert (left, right) == (made.left_dan, made.right_dan)
            expected_first = (expected_first + len(chunk.left_force_dan)) % bt.INDEX_MODULUS
            # the snapshot it rides with was read after the samples: none of them is newer than it
            newest = (expected_first - 1) % bt.INDEX_MODULUS
            assert (chunk.sample_index - newest) % bt.INDEX_MODULUS < bt.HALF_INDEX
        await drv.set_motors(False)


async def test_a_followed_snapshot_is_still_a_tester_snapshot_live_message_with_the_samples_added() -> None:
    reading = bt.FollowedSnapshot(
        left_force_n=1200, right_force_n=1100, left_load_n=4000, right_load_n=3900, left_speed_kmh=2.5,
        right_speed_kmh=2.5, state=bt.TesterState.RUNNING, fault_code=bt.FaultCode.NONE, sample_index=361,
        sample_rate_hz=100, ring_size=512, first_sample_index=360, left_force_dan=(118, 120),
        right_force_dan=(109, 110),
    )
    live = reading_to_live("brake-tester", "brake_tester", reading)
    assert live["schema"] == "live-brake-tester/1"
    assert live["reading"] == "TesterSnapshot"
    assert live["state"] == "running"
    assert live["sample_index"] == 361
    assert live["first_sample_index"] == 360
    assert live["left_force_dan"] == [118, 120]
    assert live["right_force_dan"] == [109, 110]


async def test_following_pauses_while_a_recording_reads_the_ring_and_the_recording_stays_lossless() -> None:
    async with following() as (sim, drv):
        await _running(sim, drv)
        with drv.readings.subscription() as queue:
            async with record_curve(drv) as rec:
                await asyncio.sleep(0.2)
                _followed(queue)  # what was followed before the recording began
                await asyncio.sleep(1.0)
                during = _followed(queue)
        assert during == []
        assert rec.error is None and rec.capture.lost == 0
        samples = rec.samples
        assert [s.seq for s in samples] == list(range(samples[0].seq, samples[0].seq + len(samples)))
        produced = {s.index: s for s in sim.produced_samples()}
        for got in samples:
            made = produced[got.index]
            assert (got.left_force_n, got.right_force_n) == (made.left_dan * 10, made.right_dan * 10)
        with drv.readings.subscription() as queue:
            await asyncio.sleep(0.5)
        assert _followed(queue), "following resumes after the recording"
        await drv.set_motors(False)


async def test_polling_faster_than_ten_hertz_adds_snapshots_not_ring_reads_and_loses_no_sample() -> None:
    async with following(poll_hz=50.0) as (sim, drv):
        await _running(sim, drv)
        ring_reads = 0
        read_ring = drv.read_ring

        async def counted(read: bt.RingRead) -> list[int]:
            nonlocal ring_reads
            ring_reads += 1
            return await read_ring(read)

        drv.read_ring = counted  # type: ignore[method-assign]
        with drv.readings.subscription() as queue:
            await asyncio.sleep(1.0)
        chunks = _followed(queue)
        assert ring_reads <= 15  # about ten a second (at most one each 90 ms), not fifty
        expected_first = chunks[0].first_sample_index
        for chunk in chunks:
            assert chunk.first_sample_index == expected_first
            expected_first = (expected_first + len(chunk.left_force_dan)) % bt.INDEX_MODULUS
        await drv.set_motors(False)


async def _just_followed(drv: BrakeTesterDriver) -> None:
    """Wait until a following poll has just published (the next one is a poll interval away)."""
    with drv.readings.subscription() as queue:
        while not isinstance(await asyncio.wait_for(queue.get(), 2), bt.FollowedSnapshot):
            pass


async def test_following_resumes_when_the_tester_restarts_and_a_snapshot_saw_it_first() -> None:
    async with following() as (sim, drv):
        await drv.wait_snapshot(lambda s: s.sample_index > 400, 8, what="400 samples since power-up")
        await _just_followed(drv)
        sim.sync()
        sim.model.produced = 0  # a quick firmware reset: SAMPLE_INDEX starts again from 0, the link stays up
        await drv.snapshot()  # a procedure (wait_snapshot) reads the state before the next following poll
        with drv.readings.subscription() as queue:
            await asyncio.sleep(1.5)
        assert _followed(queue), "following stays silent (cursor ahead of SAMPLE_INDEX) after the index went back"


async def test_following_survives_a_ring_size_change() -> None:
    async with following() as (sim, drv):
        await drv.wait_snapshot(lambda s: s.sample_index > 100, 8, what="100 samples since power-up")
        while drv._follow is None or drv._follow.next_index % 512 < 300:
            await asyncio.sleep(0.01)
        await _just_followed(drv)
        sim.sync()
        sim.model.ring_size = 256  # the tester now holds 256 samples: slots 256..511 answer exception 02
        sim.model.ring = sim.model.ring[: 2 * 256]
        with drv.readings.subscription() as queue:
            await asyncio.sleep(1.5)
        assert _followed(queue), "following stuck: every poll re-reads a slot outside the new ring"
