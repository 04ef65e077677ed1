"""A device's sample ring over Modbus input registers: index arithmetic, read planning, the cursor.

Pure code (no I/O), shared by every device that keeps its newest samples in a
ring of input registers (the RB-2 brake tester: 2 registers a sample at 100 Hz;
the CD-1 dynamometer: 3 registers a sample at 10 Hz). The rules are the same
for both manuals:

- SAMPLE_INDEX numbers the newest sample and wraps at 65536; all index
  arithmetic is modulo 65536.
- Sample i lives at `base + sample_registers · (i mod ring_size)`.
- One FC04 read returns at most 125 registers; a range crossing the ring's end
  (or the index's wrap) takes two reads.
- A sample read in a block is valid only if a SAMPLE_INDEX read taken after the
  block satisfies (SAMPLE_INDEX − i) mod 65536 < ring_size; a reader that fell
  further behind has lost samples and must say how many.

A device module subclasses `RingRead` (adding its `samples` property) and
`RingCursor` (setting `base` and `sample_registers`, adding the decoding of its
registers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

from protocols.errors import ProtocolError

INDEX_MODULUS = 65536
#: half the index space: a sample "ahead" of SAMPLE_INDEX by less than this is in the future
HALF_INDEX = INDEX_MODULUS // 2
#: the most registers one FC03/FC04 read may return (Modbus limit and the manuals')
MAX_READ_REGISTERS = 125


class RingRead(NamedTuple):
    """One FC04 read of a ring: `register_count` registers from `address`, holding samples from
    `first_sample` (a device module's subclass knows how many registers a sample takes)."""

    address: int
    register_count: int
    first_sample: int


def check_ring_size(ring_size: int) -> None:
    """ProtocolError unless 1 ≤ ring_size ≤ 32768 (a bigger ring could not tell old from new)."""
    if not 1 <= ring_size <= HALF_INDEX:
        raise ProtocolError(f"ring size {ring_size} is not 1–{HALF_INDEX}")


def slot_address(index: int, ring_size: int, base: int, sample_registers: int) -> int:
    """Input register holding the first register of sample `index`."""
    check_ring_size(ring_size)
    return base + sample_registers * ((index % INDEX_MODULUS) % ring_size)


def pending_samples(next_index: int, newest_index: int) -> int:
    """Samples from `next_index` through `newest_index` (mod 65536); 0 when `next_index` is newer
    than `newest_index` (not produced yet: within half the index space ahead)."""
    pending = (newest_index - next_index + 1) % INDEX_MODULUS
    return 0 if pending > HALF_INDEX else pending


def plan_reads(
    next_index: int,
    newest_index: int,
    *,
    ring_size: int,
    base: int,
    sample_registers: int,
    max_regs: int = MAX_READ_REGISTERS,
) -> list[RingRead]:
    """The reads that fetch every sample still in the ring from `next_index` through `newest_index`,
    oldest first: at most `max_regs` registers each (whole samples), split where the ring ends and
    where the index wraps. Samples older than the ring's oldest are skipped (the caller counts them
    as lost)."""
    check_ring_size(ring_size)
    per_read = max_regs // sample_registers
    if per_read < 1:
        raise ProtocolError(f"max_regs {max_regs} cannot hold one sample ({sample_registers} registers)")
    available = min(pending_samples(next_index, newest_index), ring_size)
    first = (newest_index - available + 1) % INDEX_MODULUS
    reads: list[RingRead] = []
    done = 0
    while done < available:
        start = (first + done) % INDEX_MODULUS
        slot = start % ring_size
        # contiguous registers end where the ring ends (back to slot 0) or where the index wraps at
        # 65536 (slot 0 again, even when RING_SIZE does not divide 65536)
        n = min(per_read, available - done, ring_size - slot, INDEX_MODULUS - start)
        reads.append(RingRead(base + sample_registers * slot, sample_registers * n, start))
        done += n
    return reads


@dataclass(frozen=True)
class BlockCheck:
    """Validity of a block of `size` samples: those from offset `valid_from` on are good; the ones
    before it were overwritten while the block was read (lost)."""

    valid_from: int
    size: int

    @property
    def lost(self) -> int:
        return self.valid_from

    @property
    def valid(self) -> int:
        return self.size - self.valid_from


def validate_block(first_index: int, size: int, sample_index_after: int, ring_size: int) -> BlockCheck:
    """Which of samples first_index … first_index+size-1 are valid, given a SAMPLE_INDEX read taken
    after the block: sample i is valid iff (SAMPLE_INDEX − i) mod 65536 < ring_size."""
    check_ring_size(ring_size)
    if size < 0:
        raise ProtocolError(f"block size {size} is negative")
    if size == 0:
        return BlockCheck(0, 0)
    last = (first_index + size - 1) % INDEX_MODULUS
    if (sample_index_after - last) % INDEX_MODULUS >= HALF_INDEX:
        raise ProtocolError(
            f"SAMPLE_INDEX read after the block is {sample_index_after}, older than sample {last} in it: "
            "the index went backwards (device restarted?)"
        )
    behind_first = (sample_index_after - first_index) % INDEX_MODULUS
    return BlockCheck(min(size, max(0, behind_first - ring_size + 1)), size)


@dataclass(frozen=True)
class Gap:
    """Samples lost by a reader: `count` samples from device index `first_index` (seq `first_seq`)."""

    first_index: int
    count: int
    first_seq: int


@dataclass
class RingCursor:
    """A reader's place in a ring: plans the next reads, checks each block against the
    SAMPLE_INDEX read after it, and hands out every valid sample's registers exactly once, in
    order. Samples it could not get in time are counted in `lost` and listed in `gaps`.

    A subclass sets `base` and `sample_registers` for its device's ring."""

    base: ClassVar[int]
    sample_registers: ClassVar[int]

    next_index: int
    ring_size: int = 512
    max_regs: int = MAX_READ_REGISTERS
    next_seq: int = 0
    lost: int = 0
    delivered: int = 0
    gaps: list[Gap] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_ring_size(self.ring_size)
        self.next_index %= INDEX_MODULUS

    def plan(self, newest_index: int) -> list[RingRead]:
        return plan_reads(self.next_index, newest_index, ring_size=self.ring_size, base=self.base,
                          sample_registers=self.sample_registers, max_regs=self.max_regs)

    def _lose(self, count: int) -> None:
        if count <= 0:
            return
        last = self.gaps[-1] if self.gaps else None
        if last is not None and last.first_seq + last.count == self.next_seq:
            self.gaps[-1] = Gap(last.first_index, last.count + count, last.first_seq)
        else:
            self.gaps.append(Gap(self.next_index, count, self.next_seq))
        self.lost += count
        self.next_index = (self.next_index + count) % INDEX_MODULUS
        self.next_seq += count

    def accept_registers(
        self, read: RingRead, registers: Sequence[int], sample_index_after: int
    ) -> tuple[int, Sequence[int]]:
        """The valid part of one ring read, given the SAMPLE_INDEX read after it: the index of its
        first valid sample and the registers of the valid samples (whole samples, in order).

        `read` must start at or after the cursor (a planned read); samples it skipped and samples
        overwritten during the read are counted as lost."""
        if len(registers) != read.register_count:
            raise ProtocolError(
                f"ring read at {read.address} returned {len(registers)} registers, asked {read.register_count}"
            )
        if read.register_count % self.sample_registers:
            raise ProtocolError(f"ring read of {read.register_count} registers is not whole samples "
                                f"({self.sample_registers} registers each)")
        skipped = (read.first_sample - self.next_index) % INDEX_MODULUS
        if skipped >= HALF_INDEX:
            raise ValueError(
                f"ring read from sample {read.first_sample} starts before the cursor ({self.next_index}): "
                "samples would be delivered twice"
            )
        size = read.register_count // self.sample_registers
        check = validate_block(read.first_sample, size, sample_index_after, self.ring_size)
        self._lose(skipped + check.lost)
        valid = registers[self.sample_registers * check.valid_from :]
        first, count = self.next_index, check.valid
        self.next_index = (self.next_index + count) % INDEX_MODULUS
        self.next_seq += count
        self.delivered += count
        return first, valid

    def skip_to(self, index: int) -> int:
        """Move forward to `index` (e.g. after the device restarted), counting what lies between as
        lost; returns that count."""
        count = (index - self.next_index) % INDEX_MODULUS
        if count >= HALF_INDEX:
            count = 0
        self._lose(count)
        self.next_index = index % INDEX_MODULUS
        return count
