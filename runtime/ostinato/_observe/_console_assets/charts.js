// Small time-series charts as inline SVG: one polyline over the server's history.
const SVG = "http://www.w3.org/2000/svg";

function svg(name, attributes = {}) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  return element;
}

function format(value) {
  if (value >= 1000) return `${(value / 1000).toFixed(1)}k`;
  return value >= 10 ? value.toFixed(0) : value.toFixed(1);
}

// A chart of `values` (null where unknown) at `times` (seconds), titled `label`.
export function chart(times, values, label) {
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
  const span = Math.max(known[known.length - 1][0] - t0, 1);
  const top = Math.max(...known.map(([, v]) => v), 1e-9);
  const points = known.map(([t, v]) => {
    const x = ((t - t0) / span) * (width - 2) + 1;
    const y = height - 2 - (v / top) * (height - 12);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  });
  element.append(svg("polyline", { points: points.join(" ") }));
  const scale = svg("text", { x: 2, y: 9 });
  scale.textContent = `max ${format(top)} · ${Math.round(span / 60)} min`;
  element.append(scale);
  return element;
}
