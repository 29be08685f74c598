// Small time-series charts as inline SVG: one polyline over the server's history.
const SVG = "http://www.w3.org/2000/svg";

function svg(name, attributes = {}) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  return element;
}

function format(value) {
  if (Number.isInteger(value)) return String(value);
  if (value >= 1000) return `${(value / 1000).toFixed(1)}k`;
  return value >= 10 ? value.toFixed(0) : value.toFixed(1);
}

function span(seconds) {
  return seconds < 120 ? `${Math.round(seconds)} s` : `${Math.round(seconds / 60)} min`;
}

// A chart of `values` (null where unknown) at `times` (seconds), named `label`, with a caption.
export function chart(times, values, label) {
  const figure = document.createElement("figure");
  figure.className = "chart-box";
  const caption = document.createElement("figcaption");
  const known = values.map((v, i) => [times[i], v]).filter(([, v]) => v !== null);
  const top = Math.max(...known.map(([, v]) => v), 0);
  const last = known.length ? known[known.length - 1][1] : null;
  const over = known.length > 1 ? span(known[known.length - 1][0] - known[0][0]) : "–";
  caption.textContent = `${label}: now ${last === null ? "–" : format(last)}, ` +
    `max ${format(top)}, last ${over}`;
  figure.append(plot(times, values, label), caption);
  return figure;
}

function plot(times, values, label) {
  const width = 240;
  const height = 40;
  const element = svg("svg", {
    class: "chart", viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none",
    role: "img", "aria-label": label,
  });
  const title = svg("title");
  title.textContent = label;
  element.append(title);
  const known = values.map((v, i) => [times[i], v]).filter(([, v]) => v !== null);
  if (known.length < 2) return element;
  const t0 = known[0][0];
  const width_s = Math.max(known[known.length - 1][0] - t0, 1);
  const top = Math.max(...known.map(([, v]) => v), 1e-9);
  const points = known.map(([t, v]) => {
    const x = ((t - t0) / width_s) * (width - 2) + 1;
    const y = height - 2 - (v / top) * (height - 12);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  });
  element.append(svg("polyline", { points: points.join(" ") }));
  return element;
}
