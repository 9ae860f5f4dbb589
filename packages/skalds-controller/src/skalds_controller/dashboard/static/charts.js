// Small inline-SVG charts: no library, readable without colour (titles and a text table).

const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const c of children) if (c) el.append(c);
  return el;
}

function title(text) {
  const t = svg("title");
  t.textContent = text;
  return t;
}

/**
 * Grouped bars per minute: series = [{name, cls, values: [n per bucket]}], labels per bucket.
 * Returns an <svg role="img"> with a title per bar.
 */
export function barChart({ labels, series, label, width = 900, height = 200 }) {
  const pad = { l: 28, r: 8, t: 8, b: 22 };
  const max = Math.max(4, ...series.flatMap((s) => s.values));
  const plotW = width - pad.l - pad.r;
  const plotH = height - pad.t - pad.b;
  const groupW = plotW / Math.max(1, labels.length);
  const barW = Math.max(2, (groupW - 4) / series.length);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label, class: "chart" });
  root.append(title(label));
  for (const frac of [0, 0.5, 1]) {
    const y = pad.t + plotH * (1 - frac);
    root.append(svg("line", { x1: pad.l, x2: width - pad.r, y1: y, y2: y, class: "grid" }));
    const t = svg("text", { x: pad.l - 4, y: y + 4, "text-anchor": "end", class: "axis" });
    t.textContent = String(Math.round(max * frac));
    root.append(t);
  }
  labels.forEach((lab, i) => {
    const x0 = pad.l + i * groupW + 2;
    series.forEach((s, j) => {
      const v = s.values[i] || 0;
      const hgt = (v / max) * plotH;
      root.append(
        svg("rect", { x: x0 + j * barW, y: pad.t + plotH - hgt, width: barW - 1, height: Math.max(0, hgt), class: `bar ${s.cls}` }, title(`${lab}: ${v} ${s.name}`)),
      );
    });
    if (i % Math.ceil(labels.length / 6) === 0) {
      const t = svg("text", { x: x0 + groupW / 2, y: height - 6, "text-anchor": "middle", class: "axis" });
      t.textContent = lab;
      root.append(t);
    }
  });
  return root;
}

/** A line over time: points = [{t, value}] (ms, number). */
export function lineChart({ points, label, width = 560, height = 140 }) {
  const pad = { l: 36, r: 8, t: 8, b: 22 };
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label, class: "chart" });
  root.append(title(label));
  if (!points.length) {
    const t = svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "axis" });
    t.textContent = "no heartbeats yet";
    root.append(t);
    return root;
  }
  const t0 = points[0].t;
  const t1 = Math.max(t0 + 1, points[points.length - 1].t);
  const vals = points.map((p) => p.value);
  const lo = Math.min(0, ...vals);
  const hi = Math.max(1, ...vals);
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (width - pad.l - pad.r);
  const y = (v) => pad.t + (1 - (v - lo) / (hi - lo)) * (height - pad.t - pad.b);
  for (const v of [lo, hi]) {
    root.append(svg("line", { x1: pad.l, x2: width - pad.r, y1: y(v), y2: y(v), class: "grid" }));
    const tx = svg("text", { x: pad.l - 4, y: y(v) + 4, "text-anchor": "end", class: "axis" });
    tx.textContent = String(v);
    root.append(tx);
  }
  const d = points.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.value).toFixed(1)}`).join(" ");
  root.append(svg("path", { d, class: "line" }));
  const last = points[points.length - 1];
  root.append(svg("circle", { cx: x(last.t), cy: y(last.value), r: 3, class: "dot" }, title(`latest: ${last.value}`)));
  const span = svg("text", { x: width - pad.r, y: height - 6, "text-anchor": "end", class: "axis" });
  span.textContent = `last ${Math.round((t1 - t0) / 1000)} s`;
  root.append(span);
  return root;
}
