"""One loop replica and its hub connection: how every kind of replica is wired to its hub.

A loop replica is a :class:`LoopManager`; when it talks to a hub (it reads or writes queues, or
it runs in a process or on a host of its own), a :class:`HubClient` carries its status and its
control. :func:`attach` connects the two the same way for a thread or asyncio loop of a local
run, a process loop's child and a remote loop (``ostinato loop``): the replica's status goes with
every heartbeat and at once on every state change, and each ``control`` message the hub sends
sets its desired state (:class:`DesiredState`, the vocabulary of the spec, ``POST /control``
and the status).
"""

from __future__ import annotations

import logging
import threading
import uuid

from .._engine._loop import LoopManager
from .._messaging._client import HubClient
from .._model._spec import DesiredState

__all__ = ["attach", "replica_identity"]

log = logging.getLogger("ostinato.replica")


def replica_identity(loop: str, replica: int) -> bytes:
    """The identity a replica's connection has at the hub: new for every connection, so that
    a restarted replica is a new peer (the hub redelivers what the old one had not acked)."""
    return f"{loop}/{replica}/{uuid.uuid4().hex[:12]}".encode()


def attach(
    manager: LoopManager,
    client: HubClient,
    *,
    desired: DesiredState = DesiredState.RUNNING,
    ask_hub: float | None = None,
) -> None:
    """Connect a loop replica to its hub connection; before either starts.

    ``desired`` is the state the replica starts in (its parent's word, or the spec's). With
    ``ask_hub``, the hub keeps the desired state (``ostinato hub``: a ``POST /control`` may have
    paused the loop since the spec was written): the replica then waits at its first iteration
    boundary until the hub says it, so a restarted replica of a paused loop runs not one
    iteration; a hub that says nothing within ``ask_hub`` seconds leaves ``desired`` in force.
    """
    client.status = lambda: manager.status().model_dump(mode="json")
    manager.on_change = lambda _m: client.send_status()

    def on_control(state: DesiredState) -> None:
        client.awaiting = False
        manager.set_desired(state)

    client.on_control = on_control
    if ask_hub is None:
        if desired is not DesiredState.RUNNING:
            manager.set_desired(desired)
        return
    client.awaiting = True
    manager.set_desired(DesiredState.PAUSED, "waiting for the hub's desired state")

    def no_word() -> None:
        if client.awaiting:
            client.awaiting = False
            log.warning("no desired state from the hub: applying the spec's (%s)", desired)
            paused = desired is DesiredState.PAUSED
            manager.set_desired(desired, "paused by the spec" if paused else None)

    timer = threading.Timer(ask_hub, no_word)
    timer.daemon = True
    timer.start()
