// The dashboard's entry point: sign-in, navigation (history routing), live indicator.

import { api, closeAll, getToken, onStreamState, onUnauthorized, setToken } from "./api.js";
import { fill } from "./dom.js";
import { startActivity } from "./live.js";
import * as create from "./pages/create.js";
import * as login from "./pages/login.js";
import * as overview from "./pages/overview.js";
import * as skalds from "./pages/skalds.js";
import * as taskDetail from "./pages/task_detail.js";
import * as tasks from "./pages/tasks.js";

const ROUTES = [
  [/^\/dashboard\/?$/, overview, "overview"],
  [/^\/dashboard\/skalds\/?$/, skalds, "skalds"],
  [/^\/dashboard\/tasks\/?$/, tasks, "tasks"],
  [/^\/dashboard\/tasks\/new\/?$/, create, "create"],
  [/^\/dashboard\/tasks\/(.+?)\/?$/, taskDetail, "tasks"],
];

const main = document.getElementById("main");
let cleanup = null;
let signedIn = false;
let stopActivity = null;

/** Go to a dashboard address without reloading the page. */
export function navigate(href, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", href);
  else history.pushState(null, "", href);
  render({ focus: true });
}

function leavePage() {
  if (cleanup) {
    try {
      cleanup();
    } catch (err) {
      console.error(err);
    }
  }
  cleanup = null;
}

function render({ focus = false } = {}) {
  leavePage();
  if (!signedIn) {
    showLogin();
    return;
  }
  const path = location.pathname;
  const found = ROUTES.map(([re, page, nav]) => [re.exec(path), page, nav]).find(([m]) => m);
  document.querySelectorAll("#nav a").forEach((a) => {
    if (found && a.dataset.nav === found[2]) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  fill(main);
  if (!found) {
    document.title = "Not found · Skalds";
    fill(main, "No such page. ", Object.assign(document.createElement("a"), { href: "/dashboard", textContent: "Overview" }));
    return;
  }
  const [match, page] = found;
  const params = match.slice(1).map(decodeURIComponent);
  cleanup = page.mount(main, { params, navigate }) || null;
  if (focus) main.focus();
}

function showLogin() {
  document.getElementById("nav").hidden = true;
  document.getElementById("logout").hidden = true;
  document.getElementById("live").hidden = true;
  document.title = "Sign in · Skalds";
  fill(main);
  cleanup = login.mount(main, { onSignedIn: enter });
}

async function enter() {
  signedIn = true;
  document.getElementById("nav").hidden = false;
  document.getElementById("logout").hidden = !getToken();
  document.getElementById("live").hidden = false;
  stopActivity = await startActivity();
  render({ focus: true });
}

function signOut() {
  setToken("");
  signedIn = false;
  if (stopActivity) stopActivity();
  stopActivity = null;
  leavePage();
  closeAll();
  render();
}

async function start() {
  document.addEventListener("click", (event) => {
    const a = event.target.closest("a[href]");
    if (!a || event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey || a.target) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || !url.pathname.startsWith("/dashboard")) return;
    event.preventDefault();
    if (url.pathname !== location.pathname || url.search !== location.search) navigate(url.pathname + url.search);
  });
  window.addEventListener("popstate", () => render({ focus: true }));
  document.getElementById("logout").addEventListener("click", signOut);
  onUnauthorized(() => signedIn && signOut());
  const live = document.getElementById("live");
  onStreamState((state) => {
    live.textContent = state === "live" ? "● live" : state === "connecting" ? "○ reconnecting…" : "";
    live.className = `live live-${state}`;
  });
  try {
    await api.get("/api/system/status"); // works without a token when the server has none
    await enter();
  } catch (err) {
    if (err.status !== 401) console.error(err);
    setToken("");
    render();
  }
}

start();
