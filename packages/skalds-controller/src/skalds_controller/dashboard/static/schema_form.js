// A form generated from a worker's JSON Schema (as pydantic publishes it): strings,
// numbers, booleans, enums, nested objects ($ref/$defs), lists, nullable fields.
// Errors are keyed by field path ("subTasks.0.name"), the same paths the API's 422
// answer uses, so client-side and server-side errors show in the same place.

import { h } from "./dom.js";

/**
 * Build the form.
 * @param {object} schema   the JSON Schema of the attachments
 * @param {object} value    the current attachments (or {})
 * @param {string} idPrefix prefix of the element ids (unique per page)
 * @returns {{element, getValue, validate, showErrors, clearErrors}}
 */
export function createSchemaForm(schema, value = {}, idPrefix = "att") {
  const root = schema || {};
  const ctx = { root, idPrefix, onChange: () => {} };
  const element = h("div", { class: "schema-form" });
  const general = h("div", { class: "form-errors", role: "alert" });
  const top = buildField(ctx, { ...resolve(root, root), type: "object" }, "", true, value || {}, "");
  element.append(general, top.el);

  function showErrors(errors) {
    clearErrors();
    const leftovers = [];
    for (const err of errors) {
      const path = normalisePath(err);
      const slot = element.querySelector(`[data-path="${CSS.escape(path)}"]`);
      if (slot) markInvalid(slot, err.message);
      else leftovers.push(path ? `${path}: ${err.message}` : err.message);
    }
    for (const text of leftovers) general.append(h("p", { class: "error" }, text));
    const first = element.querySelector("[aria-invalid=true]");
    return { first, leftovers };
  }

  function clearErrors() {
    general.replaceChildren();
    element.querySelectorAll("[data-path]").forEach((slot) => markInvalid(slot, null));
  }

  return {
    element,
    getValue: () => top.get() ?? {},
    validate: () => top.validate(),
    showErrors,
    clearErrors,
  };
}

/** The API names a missing property by its parent ("(attachments)") and the message. */
function normalisePath(err) {
  let path = err.field === "(attachments)" || err.field === "attachments" ? "" : err.field || "";
  if (path.startsWith("attachments.")) path = path.slice("attachments.".length);
  const missing = /^'([^']+)' is a required property/.exec(err.message || "");
  if (missing) path = path ? `${path}.${missing[1]}` : missing[1];
  return path;
}

function markInvalid(slot, message) {
  const control = slot.querySelector(":scope > .control, :scope > label > .control");
  const out = slot.querySelector(":scope > .field-error");
  if (out) out.textContent = message || "";
  if (control) {
    if (message) control.setAttribute("aria-invalid", "true");
    else control.removeAttribute("aria-invalid");
  }
  slot.classList.toggle("invalid", Boolean(message));
}

// ---------------------------------------------------------------------------- schema reading

/** Follow $ref, unwrap allOf of one, turn anyOf [X, null] into X + nullable. */
export function resolve(node, root, depth = 0) {
  if (!node || depth > 20) return node || {};
  let out = { ...node };
  if (out.$ref) {
    const target = lookup(root, out.$ref);
    const { $ref, ...rest } = out;
    out = { ...resolve(target, root, depth + 1), ...rest };
  }
  if (Array.isArray(out.allOf) && out.allOf.length === 1) {
    const { allOf, ...rest } = out;
    out = { ...resolve(allOf[0], root, depth + 1), ...rest };
  }
  const options = out.anyOf || out.oneOf;
  if (Array.isArray(options)) {
    const real = options.filter((o) => o.type !== "null");
    if (real.length === 1) {
      const { anyOf, oneOf, ...rest } = out;
      out = { ...resolve(real[0], root, depth + 1), ...rest, nullable: real.length < options.length };
    }
  }
  if (Array.isArray(out.type)) {
    const types = out.type.filter((t) => t !== "null");
    out.nullable = out.nullable || types.length < out.type.length;
    out.type = types.length === 1 ? types[0] : undefined;
  }
  return out;
}

function lookup(root, ref) {
  if (!ref.startsWith("#/")) return {};
  return ref
    .slice(2)
    .split("/")
    .reduce((node, part) => (node ? node[part.replace(/~1/g, "/").replace(/~0/g, "~")] : undefined), root) || {};
}

function kindOf(s) {
  if (Array.isArray(s.enum)) return "enum";
  if (s.const !== undefined) return "enum";
  if (s.type === "object" && s.properties) return "object";
  if (s.type === "array") return "array";
  if (["string", "integer", "number", "boolean"].includes(s.type)) return s.type;
  return "json"; // free-form dicts and unions: edited as JSON text
}

function join(path, key) {
  return path === "" ? String(key) : `${path}.${key}`;
}

function idFor(ctx, path) {
  return `${ctx.idPrefix}-${path.replace(/[^A-Za-z0-9_-]/g, "-") || "root"}`;
}

function labelText(s, key) {
  return typeof key === "number" ? `Item ${key + 1}` : String(key);
}

// ---------------------------------------------------------------------------- fields

function buildField(ctx, schemaNode, path, required, value, key) {
  const s = resolve(schemaNode, ctx.root);
  switch (kindOf(s)) {
    case "object":
      return objectField(ctx, s, path, required, value, key);
    case "array":
      return arrayField(ctx, s, path, required, value, key);
    case "boolean":
      return booleanField(ctx, s, path, value, key);
    case "enum":
      return enumField(ctx, s, path, required, value, key);
    case "json":
      return jsonField(ctx, s, path, required, value, key);
    default:
      return inputField(ctx, s, path, required, value, key);
  }
}

function slot(ctx, path, s, key, required, control, extra = null) {
  const id = control.id;
  const errId = `${id}-err`;
  const hintId = `${id}-hint`;
  control.classList.add("control");
  const described = [s.description ? hintId : null, errId].filter(Boolean).join(" ");
  control.setAttribute("aria-describedby", described);
  if (required) control.setAttribute("aria-required", "true");
  return h(
    "div",
    { class: "field", "data-path": path },
    h("label", { for: id }, labelText(s, key), required ? h("span", { class: "req", "aria-hidden": "true" }, " *") : null),
    control,
    extra,
    s.description ? h("p", { class: "hint", id: hintId }, s.description) : null,
    h("p", { class: "field-error", id: errId }),
  );
}

function initial(value, s) {
  return value !== undefined ? value : s.default;
}

function inputField(ctx, s, path, required, value, key) {
  const numeric = s.type === "integer" || s.type === "number";
  const start = initial(value, s);
  const long = s.type === "string" && (s.maxLength || 0) > 200;
  const control = long
    ? h("textarea", { id: idFor(ctx, path), name: path, rows: 3 })
    : h("input", {
        id: idFor(ctx, path),
        name: path,
        type: numeric ? "number" : s.format === "password" ? "password" : "text",
        step: numeric ? (s.type === "integer" ? "1" : "any") : null,
        min: numeric ? s.minimum ?? null : null,
        max: numeric ? s.maximum ?? null : null,
        placeholder: s.nullable && start == null ? "(none)" : null,
        autocomplete: "off",
      });
  if (start != null) control.value = String(start);
  const el = slot(ctx, path, s, key, required, control);
  const get = () => {
    const raw = control.value;
    if (raw.trim() === "") return s.type === "string" && required && !s.nullable ? "" : undefined;
    if (!numeric) return raw;
    const n = Number(raw);
    return Number.isNaN(n) ? raw : n;
  };
  const validate = () => {
    const problem = checkScalar(s, get(), required);
    markInvalid(el, problem);
    return problem ? [{ field: path, message: problem }] : [];
  };
  liveCheck(control, validate);
  return { el, get, validate };
}

function booleanField(ctx, s, path, value, key) {
  const control = h("input", { id: idFor(ctx, path), name: path, type: "checkbox" });
  control.checked = Boolean(initial(value, s));
  const el = slot(ctx, path, s, key, false, control);
  el.classList.add("field-check");
  return { el, get: () => control.checked, validate: () => [] };
}

function enumField(ctx, s, path, required, value, key) {
  const options = Array.isArray(s.enum) ? s.enum : [s.const];
  const start = initial(value, s);
  const control = h(
    "select",
    { id: idFor(ctx, path), name: path },
    !required || s.nullable ? h("option", { value: "" }, "(none)") : null,
    options.map((o, i) => h("option", { value: String(i) }, String(o))),
  );
  const index = options.findIndex((o) => o === start);
  control.value = index >= 0 ? String(index) : required && !s.nullable ? "0" : "";
  const el = slot(ctx, path, s, key, required, control);
  const get = () => (control.value === "" ? undefined : options[Number(control.value)]);
  const validate = () => {
    const problem = required && get() === undefined ? "required" : null;
    markInvalid(el, problem);
    return problem ? [{ field: path, message: problem }] : [];
  };
  liveCheck(control, validate);
  return { el, get, validate };
}

function jsonField(ctx, s, path, required, value, key) {
  const start = initial(value, s);
  const control = h("textarea", { id: idFor(ctx, path), name: path, rows: 3, class: "mono", spellcheck: "false" });
  if (start !== undefined) control.value = JSON.stringify(start, null, 2);
  const el = slot(ctx, path, { ...s, description: s.description || "JSON" }, key, required, control);
  const parse = () => {
    if (control.value.trim() === "") return { value: undefined };
    try {
      return { value: JSON.parse(control.value) };
    } catch {
      return { error: "not valid JSON" };
    }
  };
  const validate = () => {
    const parsed = parse();
    const problem = parsed.error || (required && parsed.value === undefined ? "required" : null);
    markInvalid(el, problem);
    return problem ? [{ field: path, message: problem }] : [];
  };
  liveCheck(control, validate);
  return { el, get: () => parse().value, validate };
}

function objectField(ctx, s, path, required, value, key) {
  const needed = new Set(s.required || []);
  const current = value && typeof value === "object" ? value : {};
  const children = Object.entries(s.properties || {}).map(([name, child]) => ({
    name,
    field: buildField(ctx, child, join(path, name), needed.has(name), current[name], name),
  }));
  const body = children.map((c) => c.field.el);
  const el =
    path === ""
      ? h("div", { class: "object-root", "data-path": "" }, body, h("p", { class: "field-error" }))
      : h(
          "fieldset",
          { class: "field object", "data-path": path },
          h("legend", {}, labelText(s, key), required ? h("span", { class: "req", "aria-hidden": "true" }, " *") : null),
          s.description ? h("p", { class: "hint" }, s.description) : null,
          body,
          h("p", { class: "field-error" }),
        );
  const get = () => {
    const out = {};
    for (const c of children) {
      const v = c.field.get();
      if (v !== undefined) out[c.name] = v;
    }
    return out;
  };
  const validate = () => children.flatMap((c) => c.field.validate());
  return { el, get, validate };
}

function arrayField(ctx, s, path, required, value, key) {
  const itemSchema = s.items || {};
  const list = h("ol", { class: "array-items" });
  const countId = `${idFor(ctx, path)}-count`;
  let items = [];
  const el = h(
    "fieldset",
    { class: "field array", "data-path": path },
    h("legend", {}, labelText(s, key), required ? h("span", { class: "req", "aria-hidden": "true" }, " *") : null),
    s.description ? h("p", { class: "hint" }, s.description) : null,
    list,
    h("button", { type: "button", class: "secondary small", onclick: () => add(undefined, true), "aria-describedby": countId }, `Add ${key} item`),
    h("span", { class: "sr-only", id: countId, "aria-live": "polite" }),
    h("p", { class: "field-error" }),
  );
  const render = (values) => {
    list.replaceChildren();
    items = [];
    values.forEach((v) => add(v, false));
    el.querySelector(`#${CSS.escape(countId)}`).textContent = `${items.length} items`;
  };
  function add(v, focus) {
    const index = items.length;
    const field = buildField(ctx, itemSchema, join(path, index), true, v, index);
    const remove = h("button", { type: "button", class: "secondary small", "aria-label": `Remove ${key} item ${index + 1}` }, "Remove");
    remove.addEventListener("click", () => {
      const values = items.map((f) => f.get());
      values.splice(index, 1);
      render(values);
    });
    list.append(h("li", {}, field.el, remove));
    items.push(field);
    if (focus) {
      el.querySelector(`#${CSS.escape(countId)}`).textContent = `${items.length} items`;
      field.el.querySelector("input, select, textarea")?.focus();
    }
  }
  render(Array.isArray(initial(value, s)) ? initial(value, s) : []);
  const get = () => items.map((f) => f.get()).map((v) => (v === undefined ? null : v));
  const validate = () => {
    const problems = items.flatMap((f) => f.validate());
    let own = null;
    if (s.minItems != null && items.length < s.minItems) own = `at least ${s.minItems} items`;
    if (s.maxItems != null && items.length > s.maxItems) own = `at most ${s.maxItems} items`;
    markInvalid(el, own);
    return own ? [{ field: path, message: own }, ...problems] : problems;
  };
  return { el, get, validate };
}

/** Check as the server would, so a mistake shows before submitting. */
function checkScalar(s, v, required) {
  if (v === undefined || v === "") return required && !s.nullable ? "required" : null;
  if (s.type === "integer" || s.type === "number") {
    if (typeof v !== "number") return "must be a number";
    if (s.type === "integer" && !Number.isInteger(v)) return "must be a whole number";
    if (s.minimum != null && v < s.minimum) return `must be ≥ ${s.minimum}`;
    if (s.maximum != null && v > s.maximum) return `must be ≤ ${s.maximum}`;
    if (s.exclusiveMinimum != null && v <= s.exclusiveMinimum) return `must be > ${s.exclusiveMinimum}`;
    if (s.exclusiveMaximum != null && v >= s.exclusiveMaximum) return `must be < ${s.exclusiveMaximum}`;
    return null;
  }
  if (typeof v === "string") {
    if (s.minLength != null && v.length < s.minLength) return `at least ${s.minLength} characters`;
    if (s.maxLength != null && v.length > s.maxLength) return `at most ${s.maxLength} characters`;
    if (s.pattern && !new RegExp(s.pattern, "u").test(v)) return `must match ${s.pattern}`;
  }
  return null;
}

/** Check a field once the user leaves it, then again as they type. */
function liveCheck(control, validate) {
  let touched = false;
  control.addEventListener("change", () => {
    touched = true;
    validate();
  });
  control.addEventListener("blur", () => {
    touched = true;
    validate();
  });
  control.addEventListener("input", () => touched && validate());
}
