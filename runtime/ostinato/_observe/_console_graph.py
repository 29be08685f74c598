"""The workflow as the console draws it: loops with their producer and chain of nodes, queues
from writer nodes to reader loops, as the document declares them (and, on Kubernetes, the
``kubectl patch`` that changes a loop's state)."""

from __future__ import annotations

import collections

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from .._model._plan import WorkflowPlan
from .._model._spec import DesiredState

__all__ = [
    "Camel",
    "GraphEnd",
    "GraphLoop",
    "GraphNode",
    "GraphQueue",
    "WorkflowGraph",
    "workflow_graph",
]


class Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class GraphNode(Camel):
    name: str
    kind: str  # producer, blocking or nonBlocking
    reads: str | None = None
    writes: str | None = None


class GraphLoop(Camel):
    name: str
    pool: str
    #: The spec's replicas; an autoscaled loop's maxReplicas.
    replicas: int
    #: An autoscaled loop's minReplicas (None: not autoscaled; then replicas is fixed).
    min_replicas: int | None = None
    producer: GraphNode
    nodes: list[GraphNode]
    circuit_breaker: bool
    #: The loop's desired state in the document (spec.state combined with the loop's).
    spec_state: str
    #: ``kubectl patch`` of this loop's state (Kubernetes only), with STATE to replace.
    patch: str | None = None


class GraphEnd(Camel):
    loop: str
    node: str


class GraphQueue(Camel):
    name: str
    mode: str  # broadcast or work
    capacity: int
    on_full: str
    durable: bool
    writers: list[GraphEnd]
    readers: list[GraphEnd]


class WorkflowGraph(Camel):
    workflow: str
    loops: list[GraphLoop]
    queues: list[GraphQueue]
    #: ``kubectl patch`` of the whole workflow's state (Kubernetes only), STATE to replace.
    patch: str | None = None


def _patch(name: str, namespace: str | None, loop: str | None, index: int | None) -> str:
    """How to change a loop's state (``loop``: its name, ``index``: its place in spec.loops), or
    the workflow's, as docs/kubernetes.md writes it: the plugin's verb first, then the raw
    ``kubectl patch`` with STATE (running, paused or stopped) to replace."""
    ns = f" -n {namespace}" if namespace else ""
    verb = f"kubectl ostinato pause|resume|stop {name}{f' {loop}' if loop else ''}{ns}"
    if index is None:
        raw = f"""kubectl patch owf {name}{ns} --type=merge -p '{{"spec":{{"state":"STATE"}}}}'"""
    else:
        body = f'[{{"op":"replace","path":"/spec/loops/{index}/state","value":"STATE"}}]'
        raw = f"kubectl patch owf {name}{ns} --type=json -p '{body}'"
    return f"{verb}\n# or, without the plugin:\n{raw}"


def workflow_graph(plan: WorkflowPlan, managed_by_operator: bool = False) -> WorkflowGraph:
    """The loops, their nodes and the queues between them, as the document declares them."""
    meta = plan.workflow.metadata
    loops = []
    writers: dict[str, list[GraphEnd]] = collections.defaultdict(list)
    readers: dict[str, list[GraphEnd]] = collections.defaultdict(list)
    for index, lp in enumerate(plan.loops):
        nodes = []
        for node in (lp.producer, *lp.chain):
            ref = node.spec.queue
            graph_node = GraphNode(
                name=node.name,
                kind=node.kind.value,
                reads=ref.read if ref else None,
                writes=ref.write if ref else None,
            )
            if graph_node.reads:
                readers[graph_node.reads].append(GraphEnd(loop=lp.name, node=node.name))
            if graph_node.writes:
                writers[graph_node.writes].append(GraphEnd(loop=lp.name, node=node.name))
            nodes.append(graph_node)
        spec_state = DesiredState.combine(plan.workflow.spec.state, lp.spec.state)
        loops.append(
            GraphLoop(
                name=lp.name,
                pool=lp.spec.pool.value,
                replicas=lp.spec.max_replicas,
                min_replicas=lp.spec.autoscale.min_replicas if lp.spec.autoscale else None,
                producer=nodes[0],
                nodes=nodes[1:],
                circuit_breaker=lp.spec.circuit_breaker is not None,
                spec_state=spec_state.value,
                patch=_patch(meta.name, meta.namespace, lp.name, index)
                if managed_by_operator
                else None,
            )
        )
    queues = [
        GraphQueue(
            name=q.name,
            mode=q.mode.value,
            capacity=q.capacity,
            on_full=q.on_full.value,
            durable=q.durable,
            writers=writers[q.name],
            readers=readers[q.name],
        )
        for q in plan.queues.values()
    ]
    patch = _patch(meta.name, meta.namespace, None, None) if managed_by_operator else None
    return WorkflowGraph(workflow=plan.name, loops=loops, queues=queues, patch=patch)
