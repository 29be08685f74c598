"""The workflow's Secret: its CURVE key set and its control token, from the runtime's own
generators; which of them the hub and the loops get."""

from __future__ import annotations

from ostinato.lowlevel import CONTROL_TOKEN_ENV, generate_control_token, generate_keys
from ostinato.lowlevel import CURVE_ENV_VARS as ENV_VARS

__all__ = [
    "CONTROL_TOKEN_ENV",
    "ENV_VARS",
    "HUB_ENV_VARS",
    "LOOP_ENV_VARS",
    "new_control_token",
    "new_secret_data",
    "secret_name",
]

#: The hub gets every key and the control token (it serves POST /control).
HUB_ENV_VARS = (*ENV_VARS.values(), CONTROL_TOKEN_ENV)
#: Loops get every key but the hub's secret one, and no control token.
LOOP_ENV_VARS = tuple(var for field, var in ENV_VARS.items() if field != "server_secret")


def secret_name(workflow: str) -> str:
    """The workflow's Secret: its keys and its control token."""
    return f"{workflow}-curve"


def new_secret_data() -> dict[str, str]:
    """A fresh key set and control token as Secret stringData: OSTINATO_CURVE_* -> Z85 text,
    OSTINATO_CONTROL_TOKEN -> the token. Never log it."""
    keys = generate_keys().as_text()
    return {
        **{ENV_VARS[field]: value for field, value in keys.items()},
        CONTROL_TOKEN_ENV: generate_control_token(),
    }


def new_control_token() -> dict[str, str]:
    """Secret stringData adding a control token to a Secret made before there were any."""
    return {CONTROL_TOKEN_ENV: generate_control_token()}
