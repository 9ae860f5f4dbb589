// Talking to the controller: JSON requests with the API token, SSE streams, followed logs.
// The token lives in sessionStorage: it is gone when the tab closes.

const TOKEN_KEY = "skalds.token";

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An error answer of the API: {error, detail, code} plus the HTTP status. */
export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
    this.detail = body && body.detail;
  }

  /** [{field, message}] when the API listed failing fields (422), else []. */
  get fields() {
    return Array.isArray(this.detail) ? this.detail.filter((d) => d && d.field) : [];
  }
}

const unauthorizedListeners = new Set();

/** Call `fn` whenever the API says the token is missing or wrong. */
export function onUnauthorized(fn) {
  unauthorizedListeners.add(fn);
  return () => unauthorizedListeners.delete(fn);
}

function headers(extra = {}) {
  const token = getToken();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

/** fetch + JSON; throws ApiError for any non-2xx answer. */
export async function request(method, path, body) {
  const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const res = await fetch(path, init);
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    if (res.status === 401) unauthorizedListeners.forEach((fn) => fn());
    throw new ApiError(res.status, data);
  }
  return data;
}

export const api = {
  get: (path) => request("GET", path),
  post: (path, body) => request("POST", path, body ?? {}),
  put: (path, body) => request("PUT", path, body),
};

/** `/api/tasks/{id}` with the id escaped. */
export function taskPath(id, rest = "") {
  return `/api/tasks/${encodeURIComponent(id)}${rest}`;
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v != null) q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

// ---------------------------------------------------------------------------- live streams

const STREAM_EVENTS = {
  tasks: ["snapshot", "task.status", "task.update"],
  skalds: ["snapshot", "skald.joined", "skald.left", "skald.changed", "skald.heartbeat"],
  status: ["status"],
};
const streams = new Map();
const stateListeners = new Set();

/** Call `fn(state)` ("live" | "connecting" | "offline") when the streams' health changes. */
export function onStreamState(fn) {
  stateListeners.add(fn);
  fn(streamState());
  return () => stateListeners.delete(fn);
}

function streamState() {
  const all = [...streams.values()];
  if (!all.length) return "offline";
  return all.every((s) => s.source.readyState === EventSource.OPEN) ? "live" : "connecting";
}

function announce() {
  const state = streamState();
  stateListeners.forEach((fn) => fn(state));
}

function open(name, params) {
  const key = name + query(params || {});
  let stream = streams.get(key);
  if (stream) return stream;
  const token = getToken();
  const url = `/api/events/${name}${query({ ...(params || {}), token: token || null })}`;
  const source = new EventSource(url);
  stream = { key, source, handlers: new Set() };
  for (const event of [...STREAM_EVENTS[name], "lagged", "error"]) {
    source.addEventListener(event, (e) => {
      if (!e.data) return; // a connection error, not an "error" event of the stream
      let data;
      try {
        data = JSON.parse(e.data);
      } catch {
        return;
      }
      stream.handlers.forEach((fn) => fn(event, data));
    });
  }
  source.onopen = announce;
  source.onerror = announce; // EventSource reconnects on its own (the server sends retry:)
  streams.set(key, stream);
  announce();
  return stream;
}

/**
 * Follow one SSE stream ("tasks", "skalds", "status"); `handler(eventName, data)`.
 * Streams are shared between subscribers and closed when the last one leaves.
 * Returns the unsubscribe function.
 */
export function subscribe(name, handler, params) {
  const stream = open(name, params);
  stream.handlers.add(handler);
  return () => {
    stream.handlers.delete(handler);
    if (!stream.handlers.size) {
      stream.source.close();
      streams.delete(stream.key);
      announce();
    }
  };
}

/** Close every stream (sign-out). */
export function closeAll() {
  for (const s of streams.values()) s.source.close();
  streams.clear();
  announce();
}

/**
 * Follow a task's log as the worker writes it; `onLines(lines)` per chunk.
 * Returns {stop, done}: `done` resolves when the server ends the stream (task ended).
 */
export function followLog(taskId, onLines, tail = 200) {
  const controller = new AbortController();
  const done = (async () => {
    const res = await fetch(taskPath(taskId, `/logs${query({ tail, follow: "true" })}`), {
      headers: headers(),
      signal: controller.signal,
    });
    if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null));
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let rest = "";
    for (;;) {
      const { value, done: end } = await reader.read();
      if (end) break;
      rest += decoder.decode(value, { stream: true });
      const cut = rest.lastIndexOf("\n");
      if (cut >= 0) {
        onLines(rest.slice(0, cut).split("\n"));
        rest = rest.slice(cut + 1);
      }
    }
    if (rest) onLines([rest]);
  })();
  return { stop: () => controller.abort(), done };
}
