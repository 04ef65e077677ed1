"""Where the data files shipped with laned live: `config/` (limits tables, platform mappings,
photo requirements, simulated devices and vehicles).

In a source checkout or an editable install that is the project's own `config/` folder. A
regular install (`pip install /opt/laned/src`, wheels on a lane PC) copies the same files to
`{sys.prefix}/share/laned/config` (pyproject.toml, `[tool.setuptools.data-files]`), because
`config/` is not a Python package. Both `laned` and the simulators look here.
"""

from __future__ import annotations

import sys
from pathlib import Path

_SOURCE = Path(__file__).resolve().parent.parent / "config"
_INSTALLED = Path(sys.prefix) / "share" / "laned" / "config"


def config_dir() -> Path:
    """The folder of the shipped data files: the checkout's `config/` if there is one, else the
    installed copy."""
    if (_SOURCE / "limits").is_dir():
        return _SOURCE
    return _INSTALLED


CONFIG_DIR = config_dir()
