// The workflow graph: loops in columns (writers before readers), queues as SVG edges from the
// writer node to the reader loop's node. Built once from the graph; figures update in place.
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  element.append(...children);
  return element;
}

// Columns: a loop goes one column right of every loop that writes a queue it reads.
function columns(graph) {
  const level = new Map(graph.loops.map((loop) => [loop.name, 0]));
  for (let pass = 0; pass < graph.loops.length; pass += 1) {
    for (const queue of graph.queues) {
      for (const writer of queue.writers) {
        for (const reader of queue.readers) {
          if (reader.loop === writer.loop) continue;
          const next = level.get(writer.loop) + 1;
          if (next > level.get(reader.loop) && next < graph.loops.length) {
            level.set(reader.loop, next);
          }
        }
      }
    }
  }
  const out = [];
  for (const loop of graph.loops) {
    const at = level.get(loop.name);
    while (out.length <= at) out.push([]);
    out[at].push(loop);
  }
  return out.filter((column) => column.length);
}

function nodeItem(loop, node) {
  const ref = node.reads ? `reads ${node.reads}` : node.writes ? `writes ${node.writes}` : "";
  const kind = { producer: "producer", blocking: "blocking", nonBlocking: "non-blocking" };
  return el(
    "li",
    {
      class: `node ${node.kind}`, id: `node-${loop.name}-${node.name}`,
      "data-loop": loop.name, "data-node": node.name, "data-health": "healthy",
    },
    el("span", { class: "node-name" }, node.name),
    " ",
    el("span", { class: "kind" }, `(${kind[node.kind]})`),
    " ",
    el("span", { class: "queue-ref" }, ref),
    el("span", { class: "figures" },
      el("span", { class: "health" }, "healthy"), el("span", { class: "calls" }, ""),
      el("span", { class: "percentiles" }, "")),
    el("span", { class: "last-error" }, ""),
  );
}

function loopBox(loop, managedByOperator) {
  const controls = managedByOperator
    ? el("pre", { class: "patch" }, el("code", {}, loop.patch || ""))
    : el(
      "div", { class: "controls" },
      ...[["paused", "Pause"], ["running", "Resume"], ["stopped", "Stop"]].map(([state, word]) =>
        el("button", {
          type: "button", "data-loop": loop.name, "data-action": state,
          "aria-label": `${word} loop ${loop.name}`,
        }, word)),
    );
  return el(
    "article",
    { class: "loop", id: `loop-${loop.name}`, "data-loop": loop.name, "aria-label": `loop ${loop.name}` },
    el("div", { class: "loop-head" },
      el("span", { class: "loop-name" }, loop.name),
      el("span", { class: "pool", "data-role": "pool" }, loop.minReplicas == null
        ? `${loop.pool} ×${loop.replicas}`
        : `${loop.pool} ×${loop.minReplicas}..${loop.replicas} (autoscaled)`),
      el("span", { class: "state pending", "data-role": "state" }, "pending")),
    el("div", { class: "replicas", "aria-label": `replicas of ${loop.name}` }),
    el("div", { class: "figures" },
      el("span", { "data-role": "rate" }, "– it/s"),
      el("span", { "data-role": "iterations" }, ""),
      el("span", { "data-role": "ticks" }, ""),
      el("span", { "data-role": "breaker" }, ""),
      el("span", { "data-role": "desired" }, "")),
    el("div", { class: "figures reason", "data-role": "reason" }, ""),
    el("ol", { class: "nodes" }, nodeItem(loop, loop.producer),
      ...loop.nodes.map((node) => nodeItem(loop, node))),
    el("div", { class: "chart-slot", "data-role": "chart" }),
    controls,
  );
}

export function buildGraph(root, graph, managedByOperator) {
  const holder = root.querySelector("#columns");
  holder.replaceChildren(...columns(graph).map((column) =>
    el("div", { class: "column" }, ...column.map((loop) => loopBox(loop, managedByOperator)))));
}

// The queues' edges, measured from where the boxes are now (call again after a resize).
export function drawEdges(root, graph) {
  const layer = root.querySelector("#edges");
  const origin = layer.getBoundingClientRect();
  const parts = [];
  for (const queue of graph.queues) {
    for (const writer of queue.writers) {
      for (const reader of queue.readers) {
        const from = root.querySelector(`#node-${CSS.escape(writer.loop)}-${CSS.escape(writer.node)}`);
        const to = root.querySelector(`#node-${CSS.escape(reader.loop)}-${CSS.escape(reader.node)}`);
        if (!from || !to) continue;
        const a = from.getBoundingClientRect();
        const b = to.getBoundingClientRect();
        const sideways = b.left >= a.right;
        const x1 = (sideways ? a.right : a.left + a.width / 2) - origin.left;
        const y1 = (sideways ? a.top + a.height / 2 : a.bottom) - origin.top;
        const x2 = (sideways ? b.left : b.left + b.width / 2) - origin.left;
        const y2 = (sideways ? b.top + b.height / 2 : b.top) - origin.top;
        const bend = sideways ? `C ${x1 + 40} ${y1}, ${x2 - 40} ${y2}` : `C ${x1} ${y1 + 30}, ${x2} ${y2 - 30}`;
        const path = document.createElementNS(SVG, "path");
        path.setAttribute("d", `M ${x1} ${y1} ${bend}, ${x2} ${y2}`);
        path.setAttribute("class", `edge ${queue.mode}`);
        path.setAttribute("data-queue", queue.name);
        const label = document.createElementNS(SVG, "text");
        label.setAttribute("x", (x1 + x2) / 2);
        label.setAttribute("y", (y1 + y2) / 2 - 4);
        label.setAttribute("class", "edge-label");
        label.textContent = `${queue.name} (${queue.mode})`;
        parts.push(path, label);
      }
    }
  }
  layer.replaceChildren(...parts);
}
