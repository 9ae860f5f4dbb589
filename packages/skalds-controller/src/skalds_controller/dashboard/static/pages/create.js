// Create a task: a class the online nodes run, its attachments form, priority,
// dependencies, deadline. On success, go to the new task and watch it start.

import { api } from "../api.js";
import { errorBox, fill, h, taskHref } from "../dom.js";
import { createSchemaForm } from "../schema_form.js";

const TOP_FIELDS = ["className", "id", "name", "priority", "dependencies", "deadline"];

function field(id, label, control, hint) {
  control.id = id;
  control.classList.add("control");
  control.setAttribute("aria-describedby", [hint ? `${id}-hint` : null, `${id}-err`].filter(Boolean).join(" "));
  return h("div", { class: "field", "data-top": id },
    h("label", { for: id }, label),
    control,
    hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null,
    h("p", { class: "field-error", id: `${id}-err` }));
}

function setError(box, name, message) {
  const slot = box.querySelector(`[data-top="${name}"]`);
  if (!slot) return false;
  slot.querySelector(".field-error").textContent = message || "";
  const control = slot.querySelector(".control");
  if (message) control.setAttribute("aria-invalid", "true");
  else control.removeAttribute("aria-invalid");
  return true;
}

export function mount(main, { navigate }) {
  document.title = "Create task · Skalds";
  const classSel = h("select", { name: "className" }, h("option", { value: "" }, "Loading…"));
  const idInput = h("input", { name: "id", autocomplete: "off", placeholder: "generated when empty" });
  const nameInput = h("input", { name: "name", autocomplete: "off" });
  const priority = h("input", { name: "priority", type: "number", min: 0, max: 10, step: 1, value: "0" });
  const deps = h("input", { name: "dependencies", autocomplete: "off", placeholder: "task-a, task-b" });
  const deadline = h("input", { name: "deadline", type: "datetime-local" });
  const schemaBox = h("div", { id: "create-attachments" });
  const general = h("div", { role: "alert" });
  const submit = h("button", { type: "submit" }, "Create task");
  const top = h("div", { class: "grid-2 tight" },
    field("c-className", "Worker class *", classSel, "Classes the online Skalds run"),
    field("c-id", "Task ID", idInput, "Letters, digits and . _ : / -"),
    field("c-name", "Name", nameInput),
    field("c-priority", "Priority", priority, "0–10, higher first"),
    field("c-dependencies", "Dependencies", deps, "IDs of tasks that must finish first, comma-separated"),
    field("c-deadline", "Deadline", deadline));
  top.querySelectorAll("[data-top]").forEach((el) => { el.dataset.top = el.dataset.top.slice(2); });
  const formEl = h("form", { class: "card create", novalidate: true },
    top,
    h("h2", {}, "Attachments"),
    schemaBox,
    general,
    h("div", { class: "actions" }, submit));
  main.append(h("h1", {}, "Create task"), formEl);

  let classes = [];
  let form = null;
  const chooseClass = () => {
    const found = classes.find((c) => c.className === classSel.value);
    if (!found) {
      form = null;
      fill(schemaBox, h("p", { class: "muted" }, "Choose a worker class to fill in its attachments."));
      return;
    }
    form = createSchemaForm(found.schema, {}, "new");
    fill(schemaBox, form.element);
  };
  classSel.addEventListener("change", () => {
    setError(top, "className", null);
    chooseClass();
  });

  (async () => {
    try {
      ({ classNames: classes } = await api.get("/api/tasks/classnames"));
      fill(classSel, h("option", { value: "" }, classes.length ? "Choose…" : "No online Skald runs a worker"),
        classes.map((c) => h("option", { value: c.className }, c.className)));
      const wanted = new URLSearchParams(location.search).get("class");
      if (wanted && classes.some((c) => c.className === wanted)) classSel.value = wanted;
      chooseClass();
    } catch (err) {
      fill(general, errorBox(err));
    }
  })();

  function topProblems() {
    const problems = [];
    if (!classSel.value) problems.push({ field: "className", message: "choose a worker class" });
    const p = Number(priority.value);
    if (priority.value === "" || !Number.isInteger(p) || p < 0 || p > 10) problems.push({ field: "priority", message: "a whole number from 0 to 10" });
    if (idInput.value && !/^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$/.test(idInput.value)) problems.push({ field: "id", message: "letters, digits and . _ : / - (starting with a letter or digit)" });
    if (deadline.value && Number.isNaN(new Date(deadline.value).getTime())) problems.push({ field: "deadline", message: "not a date" });
    return problems;
  }

  function showProblems(problems) {
    TOP_FIELDS.forEach((f) => setError(top, f, null));
    fill(general);
    const rest = [];
    for (const p of problems) {
      const name = p.field.split(".")[0];
      if (TOP_FIELDS.includes(name) && !p.field.startsWith("attachments") && setError(top, name, p.message)) continue;
      rest.push(p);
    }
    let first = formEl.querySelector("[aria-invalid=true]");
    if (form) {
      const shown = form.showErrors(rest);
      first = first || shown.first;
      if (shown.leftovers.length) fill(general, shown.leftovers.map((t) => h("p", { class: "error" }, t)));
    } else if (rest.length) {
      fill(general, rest.map((p) => h("p", { class: "error" }, `${p.field}: ${p.message}`)));
    }
    first?.focus();
  }

  formEl.addEventListener("submit", async (event) => {
    event.preventDefault();
    const problems = [...topProblems(), ...(form ? form.validate() : [])];
    if (problems.length) {
      showProblems(problems);
      return;
    }
    showProblems([]);
    const body = {
      className: classSel.value,
      attachments: form ? form.getValue() : {},
      priority: Number(priority.value),
      dependencies: deps.value.split(",").map((d) => d.trim()).filter(Boolean),
    };
    if (idInput.value) body.id = idInput.value;
    if (nameInput.value) body.name = nameInput.value;
    if (deadline.value) body.deadline = new Date(deadline.value).getTime();
    submit.disabled = true;
    try {
      const task = await api.post("/api/tasks", body);
      navigate(taskHref(task.id));
    } catch (err) {
      // The worker's schema check names paths inside the attachments; say so.
      const inAttachments = /^attachments do not fit/.test(err.message);
      const fields = err.fields.map((f) => (inAttachments ? { ...f, field: `attachments.${f.field}` } : f));
      if (fields.length) showProblems(fields);
      else fill(general, errorBox(err));
    } finally {
      submit.disabled = false;
    }
  });
}
