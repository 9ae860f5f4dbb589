// Small DOM and formatting helpers shared by the pages (no framework).

/**
 * Create an element: h("button", {type: "button", onclick}, "Save").
 * Attributes starting with "on" become listeners; `class`, `for`, booleans and
 * `dataset`-style "data-*" attributes work as in HTML. null/false children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "value") el.value = value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A link the page's router handles (no reload). */
export function link(href, ...children) {
  return h("a", { href, "data-link": true }, ...children);
}

export function taskHref(id) {
  return `/dashboard/tasks/${encodeURIComponent(id)}`;
}

const STATUS_CLASS = {
  Created: "neutral",
  Assigning: "info",
  Running: "ok",
  Paused: "warn",
  Finished: "done",
  Failed: "bad",
  Cancelled: "muted",
  online: "ok",
  offline: "bad",
};

/** A status chip: the word is always shown (colour is never the only cue). */
export function chip(status, extra = {}) {
  return h("span", { class: `chip chip-${STATUS_CLASS[status] || "neutral"}`, ...extra }, status || "—");
}

export const STATUSES = ["Created", "Assigning", "Running", "Paused", "Finished", "Failed", "Cancelled"];

/** "12 s ago", "3 min ago"… from a time in ms (client clock). */
export function ago(ms, now = Date.now()) {
  if (ms == null) return "never";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function dateTime(ms) {
  return ms == null ? "—" : new Date(ms).toLocaleString();
}

export function clock(ms) {
  return ms == null ? "—" : new Date(ms).toLocaleTimeString();
}

export function bytes(n) {
  if (n == null) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** What a worker's heartbeat number means (seed values). */
export function heartbeatText(value) {
  if (value == null) return "—";
  if (value === 200) return "200 (finished)";
  if (value === -1) return "-1 (failed)";
  if (value === -2) return "-2 (cancelled)";
  return String(value);
}

/** A short message that disappears on its own (also read by screen readers). */
export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  const el = h("div", { class: `toast toast-${kind}` }, message);
  box.append(el);
  setTimeout(() => el.remove(), 5000);
}

/** Ask before doing something that cannot be undone; resolves true when confirmed. */
export function confirmDialog(message, confirmLabel) {
  return new Promise((resolve) => {
    const dialog = h(
      "dialog",
      { class: "confirm", "aria-labelledby": "confirm-text" },
      h("p", { id: "confirm-text" }, message),
      h(
        "form",
        { method: "dialog", class: "actions" },
        h("button", { value: "cancel", type: "submit", class: "secondary" }, "Keep it"),
        h("button", { value: "ok", type: "submit", class: "danger" }, confirmLabel),
      ),
    );
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok");
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** Show an API error in a page region. */
export function errorBox(err) {
  return h("p", { class: "error", role: "alert" }, err && err.message ? err.message : String(err));
}
