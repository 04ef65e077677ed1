"""laned — the lane controller daemon for motor-vehicle inspection stations."""

__version__ = "0.2.0"
