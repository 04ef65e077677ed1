"""One second's power split on the CD-1: total wheel power = parasitic + PAU + base inertia. Pure.

devices/dynamometer.md, "Force and power":

    F_tractive = F_pau + F_pl(v) + M_base · a
    F_pl(v)    = PL_A + PL_B · v + PL_C · v²        (N, v in km/h)
    P          = F_tractive · v / 3.6               (W, v in km/h)

The ring holds only SPEED and FORCE (= F_tractive) per sample, so a second's parts are
derived from its ten samples and the holding registers BASE_INERTIA and PL_A…PL_C:

- total power: the mean of the per-sample products FORCE · v / 3.6 (`SecondRecord.power_kw`);
- parasitic power: the mean of the per-sample products F_pl(v) · v / 3.6 (the same averaging
  as the total, so the parts add up per sample);
- base-inertia power: M_base · a · v̄ / 3.6, where a is the second's roller acceleration, the
  least-squares slope of its samples' speeds (m/s) against their times (0.1 s apart), and v̄
  its mean speed; 0 for a second of one sample;
- PAU power: total − parasitic − base inertia (F_pau · v / 3.6, since F_pau = F_tractive −
  F_pl − M_base · a).

Arithmetic is exact (fractions) from the registers' integer scalings.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from protocols.dynamometer import DEFAULT_SAMPLE_RATE_HZ, DynoHolding, SecondRecord
from protocols.ring import INDEX_MODULUS

KMH_PER_MS = Fraction(36, 10)


@dataclass(frozen=True)
class LossModel:
    """What the split needs from the holding registers, exact in their units: BASE_INERTIA (kg),
    PL_A (N), PL_B (N per km/h), PL_C (N per (km/h)²)."""

    base_inertia_kg: int
    pl_a_n: Fraction
    pl_b: Fraction
    pl_c: Fraction

    @classmethod
    def of_holding(cls, h: DynoHolding) -> LossModel:
        """From decoded holding registers (PL_A in 0.1 N, PL_B in 0.001, PL_C in 0.0001 steps)."""
        return cls(h.base_inertia_kg, Fraction(round(h.pl_a_n * 10), 10),
                   Fraction(round(h.pl_b_n_per_kmh * 1000), 1000), Fraction(round(h.pl_c_n_per_kmh2 * 10000), 10000))

    def parasitic_force_n(self, speed_kmh: Fraction) -> Fraction:
        return self.pl_a_n + self.pl_b * speed_kmh + self.pl_c * speed_kmh * speed_kmh


@dataclass(frozen=True)
class PowerSplit:
    """One second's powers (kW, exact) and its acceleration (m/s²)."""

    total_kw: Fraction
    parasitic_kw: Fraction
    inertia_kw: Fraction
    pau_kw: Fraction
    accel_ms2: Fraction


def second_accel_ms2(record: SecondRecord, sample_rate_hz: int = DEFAULT_SAMPLE_RATE_HZ) -> Fraction:
    """The least-squares slope of the second's speeds (m/s) against their sample times (s)."""
    samples = record.ring_samples
    if len(samples) < 2:
        return Fraction(0)
    ts = [Fraction((s.index - record.first_index) % INDEX_MODULUS, sample_rate_hz) for s in samples]
    vs = [Fraction(s.speed_raw, 100) / KMH_PER_MS for s in samples]
    n = len(samples)
    t_mean, v_mean = sum(ts, Fraction(0)) / n, sum(vs, Fraction(0)) / n
    spread = sum(((t - t_mean) ** 2 for t in ts), Fraction(0))
    if spread == 0:
        return Fraction(0)
    return sum(((t - t_mean) * (v - v_mean) for t, v in zip(ts, vs, strict=True)), Fraction(0)) / spread


def power_split(record: SecondRecord, losses: LossModel, sample_rate_hz: int = DEFAULT_SAMPLE_RATE_HZ) -> PowerSplit:
    """The second's total, parasitic, base-inertia and PAU power (see the module docstring).
    A record without its ring samples (built elsewhere) splits by its mean speed alone."""
    if record.ring_samples:
        speeds = [Fraction(s.speed_raw, 100) for s in record.ring_samples]
        parasitic_w = sum((losses.parasitic_force_n(v) * v / KMH_PER_MS for v in speeds), Fraction(0)) / len(speeds)
    else:
        parasitic_w = losses.parasitic_force_n(record.speed_kmh) * record.speed_kmh / KMH_PER_MS
    accel = second_accel_ms2(record, sample_rate_hz)
    inertia_w = losses.base_inertia_kg * accel * record.speed_kmh / KMH_PER_MS
    parasitic_kw, inertia_kw = parasitic_w / 1000, inertia_w / 1000
    return PowerSplit(record.power_kw, parasitic_kw, inertia_kw, record.power_kw - parasitic_kw - inertia_kw, accel)
