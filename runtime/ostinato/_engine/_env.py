"""The engine's on/off switches read from the environment (inherited by process loops), each
refused with one line naming the variable when it is neither on nor off."""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["env_switch"]


def env_switch(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """``$name`` as on (the default: unset) or off; ValueError for anything else."""
    value = (os.environ if environ is None else environ).get(name, "on").lower()
    if value in ("on", "1", "true", "yes"):
        return True
    if value in ("off", "0", "false", "no"):
        return False
    raise ValueError(f"{name}={value!r}: expected 'on' or 'off'")
