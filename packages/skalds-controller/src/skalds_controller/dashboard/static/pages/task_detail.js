// One task: every field, live status, attachments form (from the worker's schema) with
// live update, Cancel / Pause / Resume / Retry, heartbeat history, error, log tail.

import { api, followLog, subscribe, taskPath } from "../api.js";
import { lineChart } from "../charts.js";
import { chip, clock, confirmDialog, dateTime, errorBox, fill, h, heartbeatText, toast } from "../dom.js";
import { liveTasks, watchNodes } from "../live.js";
import { createSchemaForm } from "../schema_form.js";

const FINAL = new Set(["Finished", "Failed", "Cancelled"]);
const MAX_LOG_LINES = 500;
const MAX_BEATS = 120;

function fieldValue(key, value) {
  if (value == null || value === "") return "—";
  if (/DateTime$|^notBefore$/.test(key) && typeof value === "number") return dateTime(value);
  if (typeof value === "object") return h("code", {}, JSON.stringify(value));
  return String(value);
}

export function mount(main, { params }) {
  const [taskId] = params;
  document.title = `${taskId} · Skalds`;
  let task = null;
  let form = null;
  let beats = [];
  let log = null;
  let closed = false;

  const statusBox = h("span", { id: "task-status", "aria-live": "polite" });
  const actions = h("div", { class: "actions", role: "group", "aria-label": "Task actions" });
  const fields = h("dl", { class: "kv fields", id: "task-fields" });
  const formBox = h("div", { id: "attachments-form" });
  const saveNote = h("p", { id: "update-status", class: "muted", role: "status" });
  const heartbeatNow = h("p", { id: "heartbeat-now" });
  const chartBox = h("div", { class: "chart-box", id: "heartbeat-chart" });
  const errorSection = h("section", { class: "card", id: "task-error", hidden: true, "aria-labelledby": "h-error" });
  const logBox = h("pre", { class: "log", id: "task-log", tabindex: "0", "aria-label": "Worker log" });
  const logNote = h("p", { class: "muted", id: "log-status" });
  const pageError = h("div");

  main.append(
    h("p", { class: "crumbs" }, h("a", { href: "/dashboard/tasks", "data-link": true }, "Tasks"), " / "),
    h("div", { class: "page-head" }, h("h1", { class: "task-id" }, taskId), statusBox),
    pageError,
    actions,
    h("div", { class: "grid-2" },
      h("section", { class: "card", "aria-labelledby": "h-fields" }, h("h2", { id: "h-fields" }, "Details"), fields),
      h("section", { class: "card", "aria-labelledby": "h-heartbeat" }, h("h2", { id: "h-heartbeat" }, "Heartbeat"), heartbeatNow, chartBox)),
    errorSection,
    h("section", { class: "card", "aria-labelledby": "h-attachments" },
      h("h2", { id: "h-attachments" }, "Attachments"),
      h("p", { class: "muted" }, "Saving sends the new values to the running worker."),
      formBox, saveNote),
    h("section", { class: "card", "aria-labelledby": "h-log" }, h("h2", { id: "h-log" }, "Log"), logNote, logBox),
  );

  function show(t) {
    const before = task;
    task = t;
    fill(statusBox, chip(t.lifecycleStatus, { "data-status": t.lifecycleStatus }));
    const { attachments, ...rest } = t;
    fill(fields, Object.entries(rest).flatMap(([k, v]) => [h("dt", {}, k), h("dd", { "data-field": k }, fieldValue(k, v))]));
    drawActions();
    if (!before || before.lifecycleStatus !== t.lifecycleStatus) {
      loadHeartbeat();
      const started = !["Created", "Assigning"].includes(t.lifecycleStatus);
      if (started && (!log || (log.ended && t.lifecycleStatus === "Running"))) startLog();
    }
    if (!form) buildForm(t);
  }

  function button(label, onClick, cls = "secondary") {
    return h("button", { type: "button", class: cls, onclick: onClick }, label);
  }

  function drawActions() {
    const s = task.lifecycleStatus;
    fill(actions,
      s === "Running" ? button("Pause", () => act("Pause this task?", "Pause", () => api.post(taskPath(taskId, "/pause")))) : null,
      s === "Paused" ? button("Resume", () => act("Resume this task?", "Resume", () => api.post(taskPath(taskId, "/resume")))) : null,
      !FINAL.has(s) ? button("Cancel task", () => act("Cancel this task? Its worker is stopped.", "Cancel task", () => api.put(taskPath(taskId, "/status"), { lifecycleStatus: "Cancelled" })), "danger") : null,
      FINAL.has(s) ? button("Retry", () => act("Queue this task again?", "Retry", () => api.put(taskPath(taskId, "/status"), { lifecycleStatus: "Created" }))) : null,
    );
  }

  async function act(question, label, call) {
    if (!(await confirmDialog(question, label))) return;
    try {
      const answer = await call();
      toast(`${label}: sent`);
      if (answer && answer.id) show(answer);
    } catch (err) {
      toast(`${label} failed: ${err.message}`, "error");
    }
  }

  async function buildForm(t) {
    let schema = null;
    try {
      const { classNames } = await api.get("/api/tasks/classnames");
      schema = (classNames.find((c) => c.className === t.className) || {}).schema || null;
    } catch {
      // no schema: edit as JSON
    }
    if (closed) return;
    const fallback = { type: "object", properties: { attachments: { description: "No online node publishes this class's schema: edit the JSON." } } };
    form = schema
      ? createSchemaForm(schema, t.attachments || {}, "att")
      : createSchemaForm(fallback, { attachments: t.attachments || {} }, "att");
    const save = h("button", { type: "submit" }, "Save attachments");
    const el = h("form", { novalidate: true, class: "attachments" }, form.element, h("div", { class: "actions" }, save));
    el.addEventListener("submit", async (event) => {
      event.preventDefault();
      const problems = form.validate();
      if (problems.length) {
        form.showErrors(problems).first?.focus();
        fill(saveNote, "Fix the marked fields first.");
        return;
      }
      form.clearErrors();
      save.disabled = true;
      fill(saveNote, "Saving…");
      const value = schema ? form.getValue() : form.getValue().attachments || {};
      try {
        const answer = await api.put(taskPath(taskId, "/attachments"), { attachments: value });
        show(answer.task);
        const version = `version ${answer.task.attachmentsVersion}`;
        if (answer.updateReceived) fill(saveNote, h("span", { class: "ok-text" }, `Saved (${version}) · the worker received the update at ${clock(Date.now())}`));
        else if (answer.updateHeld) fill(saveNote, `Saved (${version}) · the task is paused: the worker applies it when it resumes.`);
        else if (answer.updateSent) fill(saveNote, h("span", { class: "warn-text" }, `Saved (${version}) · ${answer.updateError || "the worker did not confirm"}`));
        else if (["Running", "Paused"].includes(answer.task.lifecycleStatus)) fill(saveNote, h("span", { class: "warn-text" }, `Saved (${version}) · its node was not told; it picks the update up at its next reconcile.`));
        else fill(saveNote, "Saved · the task is not running, so it gets these values when it starts.");
      } catch (err) {
        if (err.fields.length) form.showErrors(err.fields).first?.focus();
        fill(saveNote, h("span", { class: "bad-text" }, `Not saved: ${err.message}`));
      } finally {
        save.disabled = false;
      }
    });
    fill(formBox, el);
  }

  async function loadHeartbeat() {
    try {
      const hb = await api.get(taskPath(taskId, "/heartbeat"));
      if (closed) return;
      beats = hb.history.slice(-MAX_BEATS);
      drawHeartbeat(hb.heartbeat, hb.alive);
      // The cache's copy starts with the stored reason and adds the traceback.
      const reason = task && task.errorMessage;
      const unique = hb.error && reason && hb.error.startsWith(reason) ? [hb.error] : [reason, hb.error].filter(Boolean);
      errorSection.hidden = !(hb.hasError || (task && task.errorMessage));
      fill(errorSection, h("h2", { id: "h-error" }, "Error"), unique.map((t) => h("pre", { class: "traceback" }, t)));
    } catch (err) {
      fill(heartbeatNow, errorBox(err));
    }
  }

  function drawHeartbeat(value, alive) {
    fill(heartbeatNow, h("strong", {}, heartbeatText(value)), h("span", { class: "muted" }, alive ? " · alive" : " · no live heartbeat"));
    fill(chartBox, lineChart({ points: beats, label: `Heartbeat history of ${taskId}` }));
  }

  function startLog() {
    if (log) log.stop();
    const lines = [];
    const mine = { stop: null, ended: false, failed: false };
    log = mine;
    fill(logNote, "Following the worker's log…");
    const follow = followLog(taskId, (chunk) => {
      lines.push(...chunk);
      if (lines.length > MAX_LOG_LINES) lines.splice(0, lines.length - MAX_LOG_LINES);
      const atBottom = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 20;
      logBox.textContent = lines.join("\n");
      if (atBottom) logBox.scrollTop = logBox.scrollHeight;
    });
    mine.stop = follow.stop;
    follow.done
      .then(() => { if (log === mine) fill(logNote, "The task ended; this is the end of its log."); })
      .catch((err) => {
        mine.failed = true;
        if (log === mine && err.name !== "AbortError") fill(logNote, `No log to show: ${err.message}`);
      })
      .finally(() => { mine.ended = true; });
  }

  async function reload() {
    try {
      show(await api.get(taskPath(taskId)));
    } catch (err) {
      fill(pageError, errorBox(err));
    }
  }

  // The shared task stream (HTTP/1.1 allows a browser six connections per host: one
  // stream per page and purpose would soon use them up), filtered to this task.
  const stopTask = subscribe("tasks", (name, data) => {
    if (data.taskId !== taskId) return;
    if (name === "task.status") reload();
    if (name === "task.update") {
      fill(saveNote, h("span", { class: data.applied ? "ok-text" : "bad-text" },
        data.applied
          ? `The worker applied the update at ${clock(data.at)}`
          : `The worker's update handler failed on ${data.node}${data.reason ? `: ${data.reason}` : ""}`));
    }
  });
  const stopNodes = watchNodes((nodes) => {
    const live = liveTasks(nodes).get(taskId);
    // A task that just started may not have had its log file published yet: follow it
    // as soon as its node names the file.
    if (live && live.logFile && log && log.failed && task && !FINAL.has(task.lifecycleStatus)) startLog();
    if (!live || live.heartbeat == null) return;
    const node = nodes.find((n) => n.id === live.node);
    const t = (node && node.lastHeartbeat) || Date.now();
    if (!beats.length || beats[beats.length - 1].t < t) {
      beats.push({ t, value: live.heartbeat });
      if (beats.length > MAX_BEATS) beats.shift();
      drawHeartbeat(live.heartbeat, true);
    }
  });
  reload();
  if (!task) fill(logNote, "No log yet.");
  return () => {
    closed = true;
    stopTask();
    stopNodes();
    if (log) log.stop();
  };
}
