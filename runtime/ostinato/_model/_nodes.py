"""The node API users write against: configs, the data that moves along a chain, the node kinds."""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import random
import time
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from ._ports import HubPort, Submit

__all__ = [
    "BaseNode",
    "BlockingNode",
    "NodeConfig",
    "NodeContext",
    "NodeData",
    "NodeKind",
    "NonBlockingNode",
    "ProducerExhausted",
    "ProducerNode",
]


#: Trace ids come from a private generator: seeded from the OS, untouched by random.seed(),
#: and without a system call per iteration (os.urandom costs as much as the engine does).
_trace_rng = random.Random()


def new_trace_id() -> str:
    """16 random hex digits for a new iteration's trace id (bytes.hex: 0.3 µs against 0.7
    for an f-string, once per iteration of every loop)."""
    return _trace_rng.getrandbits(64).to_bytes(8, "little").hex()


class NodeKind(enum.StrEnum):
    """Where a node sits in a loop and how the loop waits for it (docs/concepts.md)."""

    PRODUCER = "producer"
    BLOCKING = "blocking"
    NON_BLOCKING = "nonBlocking"


class NodeConfig(BaseModel):
    """Base of every node's validated configuration.

    Subclass it and declare fields; the workflow document's ``config`` mapping is validated
    against it. Fields are written in camelCase in documents (``periodSeconds``) and read in
    snake_case in Python (``period_seconds``). Unknown keys are rejected so typos surface.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        # inf and nan pass a float field but not JSON: a process loop's child and the API
        # server would get null and refuse the document the parent accepted.
        allow_inf_nan=False,
    )


class ProducerExhausted(Exception):  # noqa: N818 - it is a signal, not an error
    """Raised by a producer that has nothing more to produce: the loop stops gracefully."""


@dataclass(slots=True)
class NodeData:
    """The payload moving along a chain, with the metadata of the iteration that carries it."""

    payload: Any = None
    loop: str = ""
    iteration: int = 0
    #: Wall-clock time (seconds since the epoch) at which the producer emitted this iteration.
    created_at: float = field(default_factory=time.time)
    #: 16 hex digits identifying the iteration across loops and logs.
    trace_id: str = field(default_factory=lambda: new_trace_id())
    meta: dict[str, Any] = field(default_factory=dict)

    def with_payload(self, payload: Any) -> NodeData:
        """The same iteration's metadata with another payload (what a blocking node returns)."""
        return NodeData(
            payload, self.loop, self.iteration, self.created_at, self.trace_id, self.meta
        )


class NodeContext:
    """What the engine tells a node about where it runs; set as ``node.context`` before setup."""

    def __init__(
        self,
        *,
        workflow: str,
        loop: str,
        node: str,
        sleeper: Callable[[float], Awaitable[bool]] | None = None,
        paused: Callable[[], float] | None = None,
        waiter: Callable[[asyncio.Future[Any], bool, bool], Awaitable[bool]] | None = None,
        finisher: Callable[[Callable[[], None]], None] | None = None,
        failed: Callable[[], bool] | None = None,
        hub: HubPort | None = None,
    ) -> None:
        self.workflow = workflow
        self.loop = loop
        self.node = node
        self.logger = logging.getLogger(f"ostinato.node.{loop}.{node}")
        #: Free-form counters a node reports in its status (for example ``missedTicks``).
        self.counters: dict[str, int] = {}
        self._sleeper = sleeper
        self._paused = paused
        self._waiter = waiter
        self._finisher = finisher
        self._failed = failed
        #: The loop's connection to the messaging hub, when it has one (queue nodes use it).
        self.hub = hub

    @property
    def paused_seconds(self) -> float:
        """Total time the loop has spent paused so far, in seconds (monotonic clock).

        A producer that keeps a schedule shifts it by the growth of this value, so that a pause
        is neither counted as missed ticks nor caught up afterwards.
        """
        return self._paused() if self._paused is not None else 0.0

    def count(self, name: str, amount: int = 1) -> None:
        """Add ``amount`` to the node's counter ``name`` (shown in status)."""
        self.counters[name] = self.counters.get(name, 0) + amount

    async def wait(
        self, fut: asyncio.Future[Any], *, stop_only: bool = False, owned: bool = False
    ) -> bool:
        """Wait until ``fut`` is done (True), or until the loop is asked to stop (or, unless
        ``stop_only``, to pause): then False at once. Read the outcome with ``fut.result()``.

        ``owned``: ``fut`` was made for this wait alone and is resolved with a true value; the
        loop may then resolve it with False itself to interrupt the wait, which saves a turn
        of the event loop (a hop of some 10-20 µs) on every wait."""
        if self._waiter is None:
            await asyncio.wait([fut])
            return True
        return await self._waiter(fut, stop_only, owned)

    def at_iteration_end(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the current iteration ends, failed or not (acknowledgements)."""
        if self._finisher is None:
            callback()
        else:
            self._finisher(callback)

    @property
    def iteration_failed(self) -> bool:
        """In an ``at_iteration_end`` callback: whether the iteration that ends failed (a node
        still failed after its retries)."""
        return self._failed is not None and self._failed()

    async def sleep_until(self, deadline: float) -> bool:
        """Wait until ``time.monotonic()`` reaches ``deadline``.

        Returns False when woken early because the loop was asked to pause or stop: a producer
        should then return None so that the control request takes effect at once.
        """
        delay = deadline - time.monotonic()
        if self._sleeper is None:
            await asyncio.sleep(max(delay, 0.0))
            return True
        return await self._sleeper(delay)


C = TypeVar("C", bound=NodeConfig)


class BaseNode(Generic[C]):
    """Base of all nodes. Nodes never manage concurrency: the loop calls them, the pool decides
    where. Any method may be written ``def`` or ``async def``.

    The configuration model is taken from the generic argument (``BlockingNode[MyConfig]``) or
    from a ``config_class`` attribute; it defaults to an empty :class:`NodeConfig`.
    """

    config_class: ClassVar[type[NodeConfig]] = NodeConfig
    #: The kinds this class may be used as in a workflow (set by the kind base classes).
    kinds: ClassVar[frozenset[NodeKind]] = frozenset()
    #: In the asyncio pool a sync method runs in a worker thread so the event loop stays free.
    #: A node whose sync methods are quick and never block may set this to run them inline.
    run_inline: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kinds: set[NodeKind] = set()
        for base in cls.__mro__[1:]:
            kinds.update(base.__dict__.get("_own_kinds", ()))
        kinds.update(cls.__dict__.get("_own_kinds", ()))
        cls.kinds = frozenset(kinds)
        if "config_class" in cls.__dict__:
            return
        for base in cls.__dict__.get("__orig_bases__", ()):
            for arg in typing.get_args(base):
                if isinstance(arg, type) and issubclass(arg, NodeConfig):
                    cls.config_class = arg
                    return

    def __init__(self, config: C, context: NodeContext | None = None) -> None:
        self.config: C = config
        self.context = context or NodeContext(workflow="", loop="", node=type(self).__name__)

    @property
    def logger(self) -> logging.Logger:
        return self.context.logger

    def setup(self) -> object:
        """Called once before the first iteration (in the pool where the loop runs)."""
        return None

    def teardown(self) -> object:
        """Called once when the loop stops, after non-blocking calls have drained."""
        return None

    def on_pause(self) -> object:
        """Called when the loop pauses, at the iteration boundary, before it reports paused."""
        return None

    def on_resume(self) -> object:
        """Called when a paused loop resumes, before its next iteration."""
        return None

    def _submitter(self) -> Submit | None:
        """The engine's fast path for a non-blocking node (see ``Submit``): a node that can start
        its side effect without a task of its own returns how; the default cannot. Not for
        users' nodes: the queue writer is the one that does."""
        return None


class ProducerNode(BaseNode[C]):
    """Starts each iteration. ``produce`` returns the iteration's :class:`NodeData` (or a bare
    payload), or None for "no iteration now"; raising :class:`ProducerExhausted` ends the loop."""

    _own_kinds = (NodeKind.PRODUCER,)

    def produce(self) -> object:
        raise NotImplementedError(f"{type(self).__name__} must implement produce()")


class _ChainNode(BaseNode[C]):
    def process(self, data: NodeData) -> object:
        raise NotImplementedError(f"{type(self).__name__} must implement process(data)")


class BlockingNode(_ChainNode[C]):
    """Runs in the chain; the next node starts with its return value once it returns. Returning
    a :class:`NodeData` passes it on as is; any other value becomes the payload."""

    _own_kinds = (NodeKind.BLOCKING,)


class NonBlockingNode(_ChainNode[C]):
    """A side effect: handed to the loop's side-effect executor while the chain goes on with the
    same data. Its return value is ignored; its errors are reported, never fail the iteration."""

    _own_kinds = (NodeKind.NON_BLOCKING,)


def is_async_callable(fn: Callable[..., object]) -> bool:
    """True for ``async def`` functions and methods (the engine awaits them)."""
    return inspect.iscoroutinefunction(fn)
