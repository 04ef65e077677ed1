"""`laned bench`: what a lane costs, how close it runs to the wire's limit, and how it compares with a
generic Modbus-to-MQTT gateway — measured on the project's simulators and a broker the bench starts
itself (mosquitto when installed, else the embedded one), on loopback only.

One module per figure (docs/performance.md says what bounds each):

    fig_serial    1. serial efficiency of the gas analyzer at 9600 baud
    fig_curves    2. lossless brake curves over Modbus RTU and TCP, and the bus time left over
    fig_lanes     3. latency (live readings, inspection results) and 4. the cost of 1, 4, 8 lanes
    fig_outbox    5. the outbox: results per second to PUBACK, draining 10,000 after an outage
    fig_gateway   6. laned against modbus4mqtt, side by side

`--quick` (under 2 minutes) uses short windows; the full run takes several minutes. Every
figure is the median over `--repeats` windows. `--json FILE` writes the same figures.
"""

from __future__ import annotations

from laned.bench.runner import add_arguments, run_bench

__all__ = ["add_arguments", "run_bench"]
