// Sign-in: the API token, kept in sessionStorage for this tab only.

import { api, setToken } from "../api.js";
import { h } from "../dom.js";

export function mount(main, { onSignedIn }) {
  const input = h("input", { id: "token", name: "token", type: "password", autocomplete: "current-password", required: true });
  const error = h("p", { class: "field-error", id: "token-err", role: "alert" });
  input.setAttribute("aria-describedby", "token-err");
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "card login", novalidate: true },
    h("h1", {}, "Skalds dashboard"),
    h("p", { class: "muted" }, "This controller asks for its API token (SKALDS_API_TOKEN)."),
    h("div", { class: "field" }, h("label", { for: "token" }, "API token"), input, error),
    button,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    input.removeAttribute("aria-invalid");
    if (!input.value) {
      error.textContent = "Enter the API token.";
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    button.disabled = true;
    setToken(input.value);
    try {
      await api.get("/api/system/status");
      onSignedIn();
    } catch (err) {
      setToken("");
      error.textContent = err.status === 401 ? "That token was refused." : `Cannot reach the controller: ${err.message}`;
      input.setAttribute("aria-invalid", "true");
      input.focus();
    } finally {
      button.disabled = false;
    }
  });
  main.append(form);
  input.focus();
}
