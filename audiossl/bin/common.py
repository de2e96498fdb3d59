"""What every entry point shares: Kaldi-style boolean options and one log format."""
from __future__ import annotations

import argparse

from audiossl.train.logging import setup_logging

__all__ = ["str2bool", "setup_logging"]


def str2bool(value: str) -> bool:
    """argparse type for ``--flag true|false`` (the recipes' convention, as parse_options.sh)."""
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
