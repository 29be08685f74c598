"""The workflow's CURVE key set for its Secret, from the runtime's own key generator."""

from __future__ import annotations

from ostinato.lowlevel import CURVE_ENV_VARS as ENV_VARS
from ostinato.lowlevel import generate_keys

__all__ = ["ENV_VARS", "LOOP_ENV_VARS", "new_secret_data"]

#: Loops get every key but the hub's secret one.
LOOP_ENV_VARS = tuple(var for field, var in ENV_VARS.items() if field != "server_secret")


def new_secret_data() -> dict[str, str]:
    """A fresh key set as Secret stringData: OSTINATO_CURVE_* -> Z85 text. Never log it."""
    keys = generate_keys().as_text()
    return {ENV_VARS[field]: value for field, value in keys.items()}
