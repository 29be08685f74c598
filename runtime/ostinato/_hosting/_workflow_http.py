"""The HTTP server of `ostinato run` and `ostinato hub`, with the workflow's control token.

Where the token comes from, first found wins (docs/running.md#the-control-token):

1. ``--control-token-file FILE``: the token in it, or a new one written there (mode 0600);
2. ``--keys FILE`` (the hub): its ``control_token`` field, which must be there;
3. ``OSTINATO_CONTROL_TOKEN``; a hub whose CURVE keys come from the ``OSTINATO_CURVE_*``
   variables needs it beside them (pods get both from the workflow's Secret);
4. else a new token for this process, written to a private file (``$XDG_RUNTIME_DIR/ostinato/
   <workflow>-<port>.token``) whose path is logged, and removed when the server closes.

So POST /control is never open: without a token given, only who can read that file controls.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .._messaging._token import (
    CONTROL_TOKEN_ENV,
    ControlTokenError,
    generate_control_token,
    runtime_token_path,
    token_file,
    token_from_env,
    token_from_keys_file,
    write_private_file,
)
from .._observe._console import Console
from .._observe._http import HttpSettings, ObservabilityServer, StatusSource

__all__ = ["TokenSources", "WorkflowHttp"]


@dataclass(frozen=True)
class TokenSources:
    """Where this process was told to find its control token."""

    #: --control-token-file
    file: Path | None = None
    #: --keys (the hub's key file)
    keys_file: Path | None = None
    #: The CURVE keys came from the OSTINATO_CURVE_* variables: the token must be there too.
    keys_in_env: bool = False

    def configured(self, environ: Mapping[str, str] = os.environ) -> tuple[str, str] | None:
        """``(token, where it came from)``, or None when none was configured."""
        if self.file is not None:
            token, created = token_file(self.file)
            return token, f"{self.file}{' (new)' if created else ''}"
        if self.keys_file is not None:
            return token_from_keys_file(self.keys_file), f"{self.keys_file}"
        from_env = token_from_env(environ)
        if from_env is not None:
            return from_env, f"${CONTROL_TOKEN_ENV}"
        if self.keys_in_env:
            raise ControlTokenError(
                f"environment variable {CONTROL_TOKEN_ENV}: missing beside the OSTINATO_CURVE_* "
                "keys (set it, from the same Secret, or give --control-token-file)"
            )
        return None


class WorkflowHttp:
    """An :class:`ObservabilityServer` with the workflow's control token: ``found`` (from
    :meth:`TokenSources.configured`), else one made here, written to a private file
    (:attr:`written`) and removed by :meth:`close`. :attr:`token_from` says where the token is
    (a file, or the variable): what the start-up line shows, never the token."""

    def __init__(
        self,
        source: StatusSource,
        workflow: str,
        *,
        host: str,
        port: int,
        settings: HttpSettings | None = None,
        found: tuple[str, str] | None = None,
        console: Console | None = None,
    ) -> None:
        token = found[0] if found else generate_control_token()
        self.server = ObservabilityServer(
            source, host=host, port=port, settings=settings, control_token=token, console=console
        )
        self.written: Path | None = None
        if found is not None:
            self.server.token_from = self.token_from = found[1]
            return
        try:
            path = runtime_token_path(workflow, self.server.port)
        except ControlTokenError:
            self.server.close()
            raise
        try:
            write_private_file(path, token + "\n")  # a file left by a killed run is replaced
        except OSError as exc:
            self.server.close()
            raise ControlTokenError(f"{path}: cannot write the control token file: {exc}") from None
        self.written = path
        self.server.token_from = self.token_from = f"{path} (new)"

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> WorkflowHttp:
        self.server.start()
        return self

    def close(self) -> None:
        self.server.close()
        if self.written is not None:
            with contextlib.suppress(OSError):
                self.written.unlink()
