// Skalds (nodes): mode, online state, heartbeat age, capacity and use, classes, tasks.

import { ago, bytes, chip, fill, h, link, taskHref } from "../dom.js";
import { watchNodes } from "../live.js";

function capacityRows(c, resources) {
  const rows = [["Workers", c.maxWorkers != null ? `${c.running ?? 0} of ${c.maxWorkers} (${c.free ?? 0} free)` : "—"]];
  if (c.cpuPercent != null) rows.push(["CPU", `${Math.round(c.cpuPercent)} % of ${c.cpuCount ?? "?"} cores`]);
  if (c.memoryTotal != null) {
    const used = c.memoryTotal - (c.memoryAvailable ?? 0);
    rows.push(["Memory", `${bytes(used)} of ${bytes(c.memoryTotal)} used`]);
  }
  if (c.nodeRss != null) rows.push(["Node process", bytes(c.nodeRss)]);
  const gpus = c.gpus ?? c.gpuCount;
  if (gpus != null) rows.push(["GPUs", Array.isArray(gpus) ? gpus.map((g) => g.name || JSON.stringify(g)).join(", ") : String(gpus)]);
  // what the node offers to tasks that ask for resources (SKALD_RESOURCES), e.g. gpu 2
  const offered = Object.entries(resources || {});
  if (offered.length) rows.push(["Resources", offered.map(([k, v]) => `${k} ${v}`).join(", ")]);
  return rows;
}

function nodeCard(n, now) {
  const used = n.capacity && n.capacity.maxWorkers ? (n.capacity.running || 0) / n.capacity.maxWorkers : 0;
  const beatAt = n.lastHeartbeat;
  return h(
    "article",
    { class: "card node", "data-node": n.id, "aria-labelledby": `node-${n.id}` },
    h("header", { class: "node-head" },
      h("h2", { id: `node-${n.id}` }, n.id),
      chip(n.status),
      h("span", { class: "tag" }, n.mode)),
    h("p", { class: "muted heartbeat-age" }, `Last heartbeat ${ago(beatAt, now)}`),
    h("meter", { min: 0, max: 1, value: used, "aria-label": `Workers in use on ${n.id}` }),
    h("dl", { class: "kv" }, capacityRows(n.capacity || {}, n.resources).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    h("h3", {}, "Worker classes"),
    (n.classNames || []).length
      ? h("ul", { class: "tags" }, n.classNames.map((c) => h("li", { class: "tag" }, c)))
      : h("p", { class: "muted" }, "none"),
    h("h3", {}, `Current tasks (${(n.tasks || []).length})`),
    (n.tasks || []).length
      ? h("ul", { class: "node-tasks" }, n.tasks.map((t) =>
          h("li", {}, link(taskHref(t.id), t.id), " ", chip(t.status), h("span", { class: "muted" }, ` ${t.className || ""} · heartbeat ${t.heartbeat ?? "—"}`))))
      : h("p", { class: "muted" }, "none"),
  );
}

export function mount(main) {
  document.title = "Skalds · Skalds";
  const list = h("div", { class: "nodes", id: "nodes" }, h("p", { class: "muted" }, "Waiting for the node registry…"));
  main.append(h("h1", {}, "Skalds"), list);
  let latest = [];
  const draw = () => {
    const now = Date.now();
    if (!latest.length) fill(list, h("p", { class: "muted" }, "No Skald has registered yet."));
    else fill(list, latest.map((n) => nodeCard(n, now)));
  };
  const stop = watchNodes((nodes) => {
    latest = nodes;
    draw();
  });
  // Ages are relative to now: redraw them every second (no request).
  const tick = setInterval(() => {
    const now = Date.now();
    for (const n of latest) {
      const el = list.querySelector(`[data-node="${CSS.escape(n.id)}"] .heartbeat-age`);
      if (el) el.textContent = `Last heartbeat ${ago(n.lastHeartbeat, now)}`;
    }
  }, 1000);
  return () => {
    stop();
    clearInterval(tick);
  };
}
