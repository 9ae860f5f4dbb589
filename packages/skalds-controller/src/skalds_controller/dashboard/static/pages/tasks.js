// Tasks: filters (status, class, executor, id prefix), sort, pages; live status and heartbeat.

import { api, query, subscribe } from "../api.js";
import { STATUSES, ago, chip, errorBox, fill, h, heartbeatText, link, taskHref } from "../dom.js";
import { liveTasks, watchNodes } from "../live.js";

const SORTS = {
  priority: ["Priority (server order)", null],
  created: ["Newest first", (a, b) => b.createDateTime - a.createDateTime],
  updated: ["Recently updated", (a, b) => b.updateDateTime - a.updateDateTime],
  id: ["ID", (a, b) => a.id.localeCompare(b.id)],
};

function select(id, label, options, value) {
  const el = h("select", { id, name: id }, options.map(([v, text]) => h("option", { value: v }, text)));
  el.value = value;
  return [h("label", { for: id }, label), el];
}

export function mount(main) {
  document.title = "Tasks · Skalds";
  const params = new URLSearchParams(location.search);
  const state = {
    lifecycleStatus: params.get("status") || "",
    className: params.get("class") || "",
    executor: params.get("executor") || "",
    id: params.get("id") || "",
    sort: SORTS[params.get("sort")] ? params.get("sort") : "priority",
    page: Math.max(1, Number(params.get("page")) || 1),
    pageSize: Number(params.get("pageSize")) || 20,
  };
  let items = [];
  let heartbeats = new Map();

  const [statusLabel, statusSel] = select("f-status", "Status", [["", "Any"], ...STATUSES.map((s) => [s, s])], state.lifecycleStatus);
  const classInput = h("input", { id: "f-class", name: "class", list: "f-class-options", value: state.className, autocomplete: "off" });
  const classOptions = h("datalist", { id: "f-class-options" });
  const executorInput = h("input", { id: "f-executor", name: "executor", list: "f-executor-options", value: state.executor, autocomplete: "off" });
  const executorOptions = h("datalist", { id: "f-executor-options" });
  const idInput = h("input", { id: "f-id", name: "id", type: "search", value: state.id, autocomplete: "off", placeholder: "starts with…" });
  const [sortLabel, sortSel] = select("f-sort", "Sort", Object.entries(SORTS).map(([k, [t]]) => [k, t]), state.sort);
  const [sizeLabel, sizeSel] = select("f-size", "Per page", [["10", "10"], ["20", "20"], ["50", "50"], ["100", "100"]], String(state.pageSize));
  const tbody = h("tbody");
  const info = h("p", { class: "muted", id: "tasks-count", "aria-live": "polite" });
  const prev = h("button", { type: "button", class: "secondary" }, "Previous");
  const next = h("button", { type: "button", class: "secondary" }, "Next");
  const error = h("div");

  main.append(
    h("div", { class: "page-head" }, h("h1", {}, "Tasks"), link("/dashboard/tasks/new", "Create task")),
    h("form", { class: "filters card", role: "search", onsubmit: (e) => e.preventDefault() },
      h("div", { class: "field" }, statusLabel, statusSel),
      h("div", { class: "field" }, h("label", { for: "f-class" }, "Class"), classInput, classOptions),
      h("div", { class: "field" }, h("label", { for: "f-executor" }, "Executor"), executorInput, executorOptions),
      h("div", { class: "field" }, h("label", { for: "f-id" }, "Search by ID"), idInput),
      h("div", { class: "field" }, sortLabel, sortSel),
      h("div", { class: "field" }, sizeLabel, sizeSel)),
    error,
    h("div", { class: "table-wrap" },
      h("table", { class: "tasks", id: "tasks-table" },
        h("caption", { class: "sr-only" }, "Tasks"),
        h("thead", {}, h("tr", {}, ["ID", "Class", "Status", "Executor", "Priority", "Heartbeat", "Created", "Updated"].map((c) => h("th", { scope: "col" }, c)))),
        tbody)),
    h("div", { class: "pager" }, prev, info, next),
  );

  function row(t) {
    const beat = heartbeats.get(t.id);
    return h("tr", { "data-task": t.id },
      h("td", {}, link(taskHref(t.id), t.id), t.name ? h("div", { class: "muted small" }, t.name) : null),
      h("td", {}, t.className),
      h("td", { class: "status-cell" }, chip(t.lifecycleStatus)),
      h("td", {}, t.executor || "—"),
      h("td", {}, String(t.priority)),
      h("td", { class: "heartbeat-cell" }, beat ? heartbeatText(beat.heartbeat) : "—"),
      h("td", { title: new Date(t.createDateTime).toLocaleString() }, ago(t.createDateTime)),
      h("td", { title: new Date(t.updateDateTime).toLocaleString() }, ago(t.updateDateTime)));
  }

  function draw() {
    const sorter = SORTS[state.sort][1];
    const shown = sorter ? [...items].sort(sorter) : items;
    if (!shown.length) fill(tbody, h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No tasks match.")));
    else fill(tbody, shown.map(row));
  }

  let total = 0;
  let loading = null;
  async function load() {
    const q = { lifecycleStatus: state.lifecycleStatus, className: state.className.trim(), executor: state.executor.trim(), id: state.id.trim(), page: state.page, pageSize: state.pageSize };
    const mine = (loading = Symbol("load"));
    try {
      const page = await api.get(`/api/tasks${query(q)}`);
      if (mine !== loading) return;
      items = page.items;
      total = page.total;
      const pages = Math.max(1, Math.ceil(total / state.pageSize));
      if (state.page > pages) {
        state.page = pages;
        return load();
      }
      fill(info, `${total} tasks · page ${state.page} of ${pages}`);
      prev.disabled = state.page <= 1;
      next.disabled = state.page >= pages;
      fill(error);
      draw();
    } catch (err) {
      fill(error, errorBox(err));
    }
  }

  function changed(resetPage = true) {
    if (resetPage) state.page = 1;
    const url = new URLSearchParams();
    const keep = { status: state.lifecycleStatus, class: state.className, executor: state.executor, id: state.id, sort: state.sort === "priority" ? "" : state.sort, page: state.page > 1 ? state.page : "", pageSize: state.pageSize === 20 ? "" : state.pageSize };
    for (const [k, v] of Object.entries(keep)) if (v !== "" && v != null) url.set(k, v);
    history.replaceState(null, "", `/dashboard/tasks${url.toString() ? `?${url}` : ""}`);
    load();
  }

  let typing = null;
  const typed = (key, input) => input.addEventListener("input", () => {
    state[key] = input.value;
    clearTimeout(typing);
    typing = setTimeout(changed, 250);
  });
  typed("className", classInput);
  typed("executor", executorInput);
  typed("id", idInput);
  statusSel.addEventListener("change", () => { state.lifecycleStatus = statusSel.value; changed(); });
  sortSel.addEventListener("change", () => { state.sort = sortSel.value; changed(false); draw(); });
  sizeSel.addEventListener("change", () => { state.pageSize = Number(sizeSel.value); changed(); });
  prev.addEventListener("click", () => { state.page -= 1; changed(false); });
  next.addEventListener("click", () => { state.page += 1; changed(false); });

  // Live: a status change updates its row at once; the list itself is re-read shortly
  // after (new tasks, filters that no longer match), once per burst of events.
  let reload = null;
  const stopTasks = subscribe("tasks", (name, data) => {
    if (name !== "task.status") return;
    const cell = tbody.querySelector(`tr[data-task="${CSS.escape(data.taskId)}"] .status-cell`);
    if (cell) fill(cell, chip(data.status));
    clearTimeout(reload);
    reload = setTimeout(load, 400);
  });
  const stopNodes = watchNodes((nodes) => {
    heartbeats = liveTasks(nodes);
    fill(executorOptions, nodes.map((n) => h("option", { value: n.id })));
    const classes = new Set(nodes.flatMap((n) => n.classNames || []));
    fill(classOptions, [...classes].sort().map((c) => h("option", { value: c })));
    for (const tr of tbody.querySelectorAll("tr[data-task]")) {
      const beat = heartbeats.get(tr.dataset.task);
      fill(tr.querySelector(".heartbeat-cell"), beat ? heartbeatText(beat.heartbeat) : "—");
    }
  });
  load();
  return () => {
    stopTasks();
    stopNodes();
    clearTimeout(reload);
    clearTimeout(typing);
  };
}
