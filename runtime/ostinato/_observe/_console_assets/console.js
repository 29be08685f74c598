// The console page: polls /console/data, shows it, and sends POST /control with the token the
// user gave (kept in this tab's sessionStorage only; the server never puts it in the page).
import { chart } from "./charts.js";
import { buildGraph, drawEdges } from "./graph.js";

const TOKEN_KEY = "ostinato-control-token";
const root = document;
let graph = null;
let managed = false;
let refresh = 1000;

const $ = (selector, within = root) => within.querySelector(selector);
const token = () => sessionStorage.getItem(TOKEN_KEY);
const authorization = () => (token() ? { Authorization: `Bearer ${token()}` } : {});

function seconds(value) {
  if (value === null || value === undefined) return "–";
  if (value < 1e-3) return `${Math.round(value * 1e6)}µs`;
  if (value < 1) return `${Math.round(value * 1e3)}ms`;
  return `${value.toFixed(1)}s`;
}

function rate(value) {
  return value === null || value === undefined ? "–" : value.toFixed(value >= 10 ? 0 : 1);
}

function say(text, ok = false) {
  const message = $("#control-message");
  message.textContent = text;
  message.classList.toggle("ok", ok);
}

function lockControls() {
  const unlocked = Boolean(token()) && !managed;
  for (const button of root.querySelectorAll("button[data-action]")) {
    button.disabled = !unlocked;
    button.title = unlocked ? "" : "read-only: give the control token first";
  }
  $("#token-forget").disabled = !token();
  $("#token").placeholder = token() ? "token given (kept in this tab)" : "paste the workflow's control token";
}

function showLoop(figures, history) {
  const box = $(`#loop-${CSS.escape(figures.name)}`);
  if (!box) return;
  box.dataset.state = figures.state;
  const state = $("[data-role=state]", box);
  state.textContent = figures.state === "idle" ? "idle (0 replicas)" : figures.state;
  state.className = `state ${figures.state}`;
  $("[data-role=rate]", box).textContent = `${rate(figures.iterationsPerSecond)} it/s`;
  $("[data-role=iterations]", box).textContent =
    `${figures.iterations} iterations, ${figures.failedIterations} failed`;
  const late = figures.lateTicks
    ? `${figures.lateTicks} late ticks (mean ${seconds(figures.meanLatenessSeconds)} late)` : "";
  $("[data-role=ticks]", box).textContent =
    [figures.missedTicks ? `${figures.missedTicks} missed ticks` : "", late]
      .filter(Boolean).join(", ");
  if (figures.currentReplicas != null) {
    const wanted = figures.desiredReplicas == null ? "" : `, ${figures.desiredReplicas} wanted`;
    $("[data-role=pool]", box).title = `${figures.currentReplicas} running${wanted}`;
  }
  $("[data-role=breaker]", box).textContent = figures.breaker ? `breaker ${figures.breaker}` : "";
  $("[data-role=desired]", box).textContent = figures.desiredState
    ? `${managed ? "spec" : "desired"}: ${figures.desiredState}` : "";
  $("[data-role=reason]", box).textContent = figures.reason || "";
  $(".replicas", box).replaceChildren(...figures.replicaStates.map((s, i) => {
    const chip = document.createElement("span");
    chip.className = `replica ${s}`;
    chip.title = `replica ${i}: ${s}`;
    return chip;
  }));
  for (const node of figures.nodes) {
    const item = $(`#node-${CSS.escape(figures.name)}-${CSS.escape(node.name)}`);
    if (!item) continue;
    item.dataset.health = node.health;
    $(".health", item).textContent = node.health;
    $(".calls", item).textContent = `${node.calls} calls, ${node.errors} errors` +
      (node.missedTicks ? `, ${node.missedTicks} missed ticks` : "");
    $(".percentiles", item).textContent = node.calls
      ? `p50 ${seconds(node.p50Seconds)} p90 ${seconds(node.p90Seconds)} p99 ${seconds(node.p99Seconds)}`
      : "";
    $(".last-error", item).textContent = node.lastError ? `last error: ${node.lastError}` : "";
  }
  const values = history.loops[figures.name] || [];
  $("[data-role=chart]", box).replaceChildren(
    chart(history.times, values, "iterations/s"));
}

function showQueues(queues, history) {
  const holder = $("#queues");
  if (holder.children.length !== queues.length) {
    holder.replaceChildren(...graph.queues.map((q) => {
      const box = document.createElement("article");
      box.className = "queue";
      box.id = `queue-${q.name}`;
      box.setAttribute("aria-label", `queue ${q.name}`);
      const writers = q.writers.map((w) => `${w.loop}.${w.node}`).join(", ") || "–";
      const readers = q.readers.map((r) => r.loop).join(", ") || "–";
      box.innerHTML = `<div><strong class="queue-name"></strong> <span class="mode ${q.mode}">${q.mode}</span>
        <span class="figures">${q.durable ? "durable" : "in memory"}, onFull ${q.onFull}</span></div>
        <div class="figures"><span class="ends"></span></div>
        <meter min="0" class="depth-meter"></meter>
        <div class="figures" data-role="depth"></div><div class="figures" data-role="rates"></div>
        <div data-role="chart"></div>`;
      $(".queue-name", box).textContent = q.name;
      $(".ends", box).textContent = `${writers} → ${readers}`;
      return box;
    }));
  }
  for (const q of queues) {
    const box = $(`#queue-${CSS.escape(q.name)}`);
    if (!box) continue;
    const meter = $(".depth-meter", box);
    meter.max = q.capacity;
    meter.value = q.depth;
    meter.setAttribute("aria-label", `depth of ${q.name}: ${q.depth} of ${q.capacity}`);
    $("[data-role=depth]", box).textContent = `depth ${q.depth} / ${q.capacity}`;
    $("[data-role=rates]", box).textContent =
      `in ${rate(q.enqueuedPerSecond)}/s, out ${rate(q.deliveredPerSecond)}/s, ` +
      `dropped ${q.dropped}, redelivered ${q.redelivered}, refused ${q.refused}`;
    $("[data-role=chart]", box).replaceChildren(
      chart(history.times, history.queues[q.name] || [], "depth"));
  }
}

async function poll() {
  try {
    const reply = await fetch("/console/data", { headers: authorization(), cache: "no-store" });
    if (!reply.ok) {
      const body = await reply.json().catch(() => ({}));
      $("#connection").textContent = `cannot read the figures: ${reply.status} ${body.error || ""}`;
    } else {
      const data = await reply.json();
      if (graph === null) {
        graph = data.graph;
        managed = data.managedByOperator;
        refresh = data.refreshSeconds * 1000;
        $("#workflow-name").textContent = graph.workflow;
        document.title = `${graph.workflow} · ostinato console`;
        buildGraph(root, graph, managed);
        $("#workflow-controls").hidden = managed;
        $("#access").hidden = managed;
        $("#kubernetes").hidden = !managed;
        $("#workflow-patch").textContent = graph.patch || "";
        lockControls();
      }
      for (const loop of data.loops) showLoop(loop, data.history);
      showQueues(data.queues, data.history);
      drawEdges(root, graph);
      $("#connection").textContent = `updated ${new Date().toLocaleTimeString()}`;
      document.body.dataset.updated = String(Date.now());
    }
  } catch (error) {
    $("#connection").textContent = `cannot reach the workflow: ${error.message}`;
  }
  setTimeout(poll, refresh);
}

function confirmStop(what) {
  const dialog = $("#confirm");
  $("#confirm-text").textContent = `Stop ${what}? A stopped loop does not start again in this run.`;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

async function control(loop, state) {
  const what = loop === null ? "every loop" : `loop ${loop}`;
  if (state === "stopped" && !(await confirmStop(what))) return;
  try {
    const reply = await fetch("/control", {
      method: "POST",
      headers: { "Content-Type": "application/json", ...authorization() },
      body: JSON.stringify({ loop, state }),
    });
    const body = await reply.json().catch(() => ({}));
    if (reply.ok) say(`${what}: ${state} asked`, true);
    else say(`${what}: ${reply.status} ${body.error || "refused"}`);
  } catch (error) {
    say(`${what}: ${error.message}`);
  }
}

root.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button || button.disabled) return;
  control(button.dataset.loop || null, button.dataset.action);
});

$("#token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const field = $("#token");
  const given = field.value.trim();
  field.value = "";
  if (given) sessionStorage.setItem(TOKEN_KEY, given);
  say(given ? "controls unlocked for this tab" : "no token given", Boolean(given));
  lockControls();
});

$("#token-forget").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  say("token forgotten: read-only", true);
  lockControls();
});

window.addEventListener("resize", () => graph && drawEdges(root, graph));
lockControls();
poll();
