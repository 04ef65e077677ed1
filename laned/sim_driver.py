"""`laned simulate driver`: the simulated person in the vehicle, as a command.

Follows the lane's prompts on `…/event` and acts through the simulators' control sockets
(`config/simulators/driver.toml` says what each prompt does). Where the lane is: `--config FILE`
(its broker and topics; the control sockets `laned simulate lane` made for it), or `--broker`,
`--station`, `--lane`. Which simulator is where: `--control brake-tester=PATH` (repeatable).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from laned.errors import ConfigError
from laned.station_client import UsageError, add_target_arguments, target_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser)
    parser.add_argument("--control", action="append", default=[], metavar="SIMULATOR=PATH",
                        help="a simulator's control socket, e.g. brake-tester=/tmp/rb2.ctl (repeatable); with "
                        "--config, default: those `laned simulate lane` made")
    parser.add_argument("--script", type=Path, help="what each prompt does (default config/simulators/driver.toml)")


def controls_from_args(args: argparse.Namespace) -> dict[str, Path]:
    controls: dict[str, Path] = {}
    if args.config is not None:
        from laned.config import load_config
        from laned.sim_lane import SIMULATOR_OF, default_control_dir

        config = load_config(args.config)
        folder = default_control_dir(config)
        controls = {SIMULATOR_OF[d.kind]: folder / f"{name}.ctl" for name, d in config.devices.items() if d.enabled}
    for entry in args.control:
        simulator, sep, path = entry.partition("=")
        if not sep or not path:
            raise UsageError(f"--control {entry}: expected SIMULATOR=PATH, e.g. brake-tester=/tmp/rb2.ctl")
        controls[simulator] = Path(path)
    if not controls:
        raise UsageError("no simulator to act on: give --config FILE or --control SIMULATOR=PATH")
    return controls


async def run(args: argparse.Namespace) -> None:
    from simulators.driver import SimulatedDriver, load_script

    try:
        target = target_from_args(args)
        if target.lane is None:
            raise UsageError("which lane? --lane CODE (or --config FILE)")
        controls = controls_from_args(args)
    except (ConfigError, UsageError) as exc:
        raise SystemExit(f"laned simulate driver: {exc}") from None
    person = SimulatedDriver(controls, load_script(args.script) if args.script else None)
    print(f"driver: follows the prompts on {target.root()}/event, acting on "
          + ", ".join(f"{k} ({v})" for k, v in controls.items()), flush=True)
    await person.run(target.host, target.port, target.root())
