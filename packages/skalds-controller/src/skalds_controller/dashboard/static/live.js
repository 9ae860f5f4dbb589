// Shared live state built from the SSE streams: the nodes (with their tasks' heartbeats)
// and the task activity per minute. Pages subscribe; the streams are opened once.

import { api, query, subscribe } from "./api.js";

// ---------------------------------------------------------------------------- nodes

const nodes = new Map();
const nodeListeners = new Set();
let unsubscribeNodes = null;

function notifyNodes() {
  const list = [...nodes.values()].sort((a, b) => a.id.localeCompare(b.id));
  nodeListeners.forEach((fn) => fn(list));
}

function onSkaldEvent(name, data) {
  if (name === "snapshot") {
    nodes.clear();
    for (const n of data.items || []) nodes.set(n.id, { ...n, seenAt: Date.now() });
  } else if (name === "skald.heartbeat") {
    // every beat of every node: ages and task heartbeats move without any polling
    const known = nodes.get(data.id) || {};
    nodes.set(data.id, { ...known, ...data, seenAt: Date.now() });
  } else if (name.startsWith("skald.")) {
    nodes.set(data.id, { ...data, seenAt: Date.now() });
  } else {
    return;
  }
  notifyNodes();
}

/** `fn(nodes)` now and on every change; returns the unsubscribe function. */
export function watchNodes(fn) {
  nodeListeners.add(fn);
  if (!unsubscribeNodes) {
    unsubscribeNodes = subscribe("skalds", onSkaldEvent);
  } else {
    notifyNodes();
  }
  return () => {
    nodeListeners.delete(fn);
    if (!nodeListeners.size && unsubscribeNodes) {
      unsubscribeNodes();
      unsubscribeNodes = null;
    }
  };
}

/** taskId → {heartbeat, status, node, pid, startedAt} as the nodes report them. */
export function liveTasks(list) {
  const out = new Map();
  for (const n of list) {
    if (n.status !== "online") continue;
    for (const t of n.tasks || []) out.set(t.id, { ...t, node: n.id });
  }
  return out;
}

// ---------------------------------------------------------------------------- activity

const MINUTE = 60_000;
export const ACTIVITY_MINUTES = 15;
const buckets = new Map(); // minute → {started, finished, failed}
const counted = new Set();
const activityListeners = new Set();
const KIND = { Running: "started", Finished: "finished", Failed: "failed" };

function record(taskId, status, at) {
  const kind = KIND[status];
  if (!kind || at == null) return false;
  const minute = Math.floor(at / MINUTE);
  const key = `${taskId}:${status}:${minute}`;
  if (counted.has(key)) return false;
  counted.add(key);
  const b = buckets.get(minute) || { started: 0, finished: 0, failed: 0 };
  b[kind] += 1;
  buckets.set(minute, b);
  return true;
}

function onTaskEvent(name, data) {
  if (name === "task.status" && record(data.taskId, data.status, data.at || Date.now())) {
    activityListeners.forEach((fn) => fn(activity()));
  }
}

/** Start counting (once per sign-in): seeds from the store, then follows the task stream. */
export async function startActivity() {
  const stop = subscribe("tasks", onTaskEvent);
  const since = Date.now() - ACTIVITY_MINUTES * MINUTE;
  await Promise.all(
    Object.keys(KIND).map(async (status) => {
      try {
        const page = await api.get(`/api/tasks${query({ lifecycleStatus: status, pageSize: 100 })}`);
        for (const t of page.items) if (t.updateDateTime >= since) record(t.id, status, t.updateDateTime);
      } catch {
        // no seed: live events still count
      }
    }),
  );
  activityListeners.forEach((fn) => fn(activity()));
  return stop;
}

/** {labels, started[], finished[], failed[]} for the last ACTIVITY_MINUTES minutes. */
export function activity(now = Date.now()) {
  const last = Math.floor(now / MINUTE);
  const out = { labels: [], started: [], finished: [], failed: [] };
  for (let m = last - ACTIVITY_MINUTES + 1; m <= last; m += 1) {
    const b = buckets.get(m) || { started: 0, finished: 0, failed: 0 };
    out.labels.push(new Date(m * MINUTE).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
    out.started.push(b.started);
    out.finished.push(b.finished);
    out.failed.push(b.failed);
  }
  return out;
}

export function watchActivity(fn) {
  activityListeners.add(fn);
  fn(activity());
  return () => activityListeners.delete(fn);
}
