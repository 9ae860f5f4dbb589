// Overview: tasks by status, nodes by mode, activity per minute, recent failures.

import { api, subscribe } from "../api.js";
import { barChart } from "../charts.js";
import { STATUSES, ago, chip, errorBox, fill, h, link, taskHref } from "../dom.js";
import { ACTIVITY_MINUTES, activity, watchActivity } from "../live.js";

export function mount(main) {
  document.title = "Overview · Skalds";
  const statusBox = h("div", { class: "stat-grid", id: "tasks-by-status" });
  const nodesBox = h("div", { class: "stat-grid", id: "nodes-by-mode" });
  const capacityBox = h("p", { class: "muted", id: "capacity" });
  const chartBox = h("div", { class: "chart-box", id: "activity" });
  const failuresBox = h("div", { id: "recent-failures" }, h("p", { class: "muted" }, "Loading…"));
  main.append(
    h("h1", {}, "Overview"),
    h("div", { class: "grid-2" },
      h("section", { class: "card", "aria-labelledby": "h-tasks" }, h("h2", { id: "h-tasks" }, "Tasks by status"), statusBox),
      h("section", { class: "card", "aria-labelledby": "h-nodes" }, h("h2", { id: "h-nodes" }, "Skalds"), nodesBox, capacityBox),
    ),
    h("section", { class: "card", "aria-labelledby": "h-activity" },
      h("h2", { id: "h-activity" }, `Activity, last ${ACTIVITY_MINUTES} minutes`),
      h("ul", { class: "legend" },
        h("li", { class: "started" }, "started"),
        h("li", { class: "finished" }, "finished"),
        h("li", { class: "failed" }, "failed")),
      chartBox),
    h("section", { class: "card", "aria-labelledby": "h-failures" }, h("h2", { id: "h-failures" }, "Recent failures"), failuresBox),
  );

  let failedCount = null;
  const showStatus = (data) => {
    const byStatus = data.tasks || {};
    fill(statusBox, STATUSES.map((s) => h("div", { class: "stat", "data-status": s }, h("span", { class: "stat-value" }, String(byStatus[s] ?? 0)), chip(s))));
    const byMode = (data.nodes && data.nodes.byMode) || {};
    fill(nodesBox, Object.entries(byMode).map(([mode, c]) =>
      h("div", { class: "stat", "data-mode": mode },
        h("span", { class: "stat-label" }, mode),
        h("span", { class: "stat-value" }, `${c.online}`), h("span", { class: "muted" }, " online"),
        c.offline ? h("span", { class: "bad-text" }, ` · ${c.offline} offline`) : null)));
    if (byStatus.Failed !== failedCount) {
      failedCount = byStatus.Failed;
      loadSummary();
    }
  };

  async function loadSummary() {
    try {
      const summary = await api.get("/api/system/dashboard/summary");
      const cap = summary.capacity;
      fill(capacityBox, `Workers in use: ${cap.running} of ${cap.maxWorkers} (${cap.free} free)`);
      const failures = summary.recentFailures;
      if (!failures.length) {
        fill(failuresBox, h("p", { class: "muted" }, "No failed tasks."));
        return;
      }
      fill(failuresBox, h("ul", { class: "failures" }, failures.map((f) =>
        h("li", {},
          link(taskHref(f.id), f.id), " ", h("span", { class: "muted" }, `${f.className} · ${ago(f.failedAt)}`),
          h("pre", { class: "reason" }, f.reason)))));
    } catch (err) {
      fill(failuresBox, errorBox(err));
    }
  }

  const stopStatus = subscribe("status", (name, data) => name === "status" && showStatus(data));
  const draw = (a) => {
    const total = (xs) => xs.reduce((x, y) => x + y, 0);
    fill(chartBox, barChart({
      labels: a.labels,
      series: [
        { name: "started", cls: "started", values: a.started },
        { name: "finished", cls: "finished", values: a.finished },
        { name: "failed", cls: "failed", values: a.failed },
      ],
      label: `Tasks per minute: ${total(a.started)} started, ${total(a.finished)} finished, ${total(a.failed)} failed`,
    }));
  };
  const stopActivity = watchActivity(draw);
  // Redraw (no request) so the minutes move on even when nothing happens.
  const tick = setInterval(() => draw(activity()), 30_000);
  return () => {
    stopStatus();
    stopActivity();
    clearInterval(tick);
  };
}
