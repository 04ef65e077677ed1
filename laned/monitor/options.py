"""`laned monitor`'s command line (kept apart so that `laned --help` does not import Textual)."""

from __future__ import annotations

import argparse

from laned.station_client import add_target_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser)
    parser.add_argument("--web", metavar="HOST:PORT",
                        help="serve the monitor to browsers (textual-serve), e.g. 0.0.0.0:8080")
    parser.epilog = ("keys: d start the daily check, a abort the running inspection (sent as the station's commands: "
                     "the broker's ACL applies), q quit. exit codes: 0 quit, 2 bad command line or config")
