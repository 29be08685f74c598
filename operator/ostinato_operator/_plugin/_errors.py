"""The one error the plugin's commands raise: a line for the user, then exit 1."""

from __future__ import annotations

__all__ = ["PluginError"]


class PluginError(Exception):
    """Bad input or a refusal from the cluster, said in one line that names what is wrong."""
