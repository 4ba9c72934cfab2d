// The new-mission form.

import { api } from "./api.js";
import { $, h } from "./dom.js";
import { refreshList } from "./list.js";
import { setActionError, setWorkflows, state } from "./state.js";

let projects = null;
let projectsError = null;

async function loadProjects(selectId) {
  try {
    projects = await api("GET", "/api/projects");
    projectsError = null;
  } catch (err) {
    projectsError = err.message;
  }
  fillProjectSelect(selectId);
}

function fillProjectSelect(selectId) {
  const select = $("create-project");
  if (!select) return;
  const keep = selectId ?? select.value;
  select.replaceChildren(h("option", { value: "" }, "None: a plain mission"),
    ...(projects || []).map((p) => h("option", { value: p.project_id }, `${p.name} — ${p.path}`)));
  if ([...select.options].some((o) => o.value === keep)) select.value = keep;
  $("create-project-note").textContent = projectsError ? `Could not load projects: ${projectsError}` : "";
  projectChanged();
}

/** A chosen project makes it a code mission: code-feature by default, a base ref to start from. */
function projectChanged() {
  const select = $("create-project");
  if (!select) return;
  const code = Boolean(select.value);
  $("create-base-field").hidden = !code;
  const wf = $("create-workflow");
  const wanted = code ? "code-feature" : state.facts.defaultWorkflow;
  if (wf && [...wf.options].some((o) => o.value === wanted) && wf.dataset.touched !== "1") {
    wf.value = wanted;
    const found = (state.workflows || []).find((w) => w.workflow_id === wanted);
    $("create-workflow-note").textContent = found ? workflowSummary(found) : "";
  }
}

/** The "Link a repository" dialog; errors stay inline until it links or is cancelled. */
function openLinkDialog() {
  const dialog = $("project-dialog");
  const form = $("project-form");
  const error = $("project-error");
  for (const id of ["project-path", "project-name", "project-test"]) $(id).value = "";
  error.hidden = true;
  const onSubmit = async (event) => {
    if (event.submitter && event.submitter.value === "cancel") return;
    event.preventDefault();
    const path = $("project-path").value.trim();
    if (!path) {
      error.textContent = "Give the repository's absolute path.";
      error.hidden = false;
      return $("project-path").focus();
    }
    const body = { path };
    const name = $("project-name").value.trim();
    const test = $("project-test").value.trim();
    if (name) body.name = name;
    if (test) body.testCommand = test;
    $("project-link").disabled = true;
    try {
      const project = await api("POST", "/api/projects", body);
      form.removeEventListener("submit", onSubmit);
      dialog.close("ok");
      await loadProjects(project.project_id);
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
    } finally {
      $("project-link").disabled = false;
    }
  };
  form.addEventListener("submit", onSubmit);
  dialog.addEventListener("close", () => form.removeEventListener("submit", onSubmit), { once: true });
  dialog.showModal();
  $("project-path").focus();
}

export async function loadWorkflows() {
  if (state.workflows) return;
  try {
    setWorkflows(await api("GET", "/api/workflows"));
  } catch (err) {
    setWorkflows(null, err.message);
  }
  fillWorkflowSelect(state.workflows, state.workflowsError, state.facts.defaultWorkflow);
}

function fillWorkflowSelect(workflows, error, defaultWorkflow) {
  const select = $("create-workflow");
  if (!select) return;
  const note = $("create-workflow-note");
  select.replaceChildren();
  if (error) {
    select.append(h("option", { value: "" }, "Server default"));
    note.textContent = `Could not load workflows: ${error}`;
    return;
  }
  for (const wf of workflows || []) {
    const count = wf.steps ? wf.steps.length : 0;
    select.append(h("option", { value: wf.workflow_id }, `${wf.name} (${count} steps)`));
  }
  const all = workflows || [];
  const wf = all.find((w) => w.workflow_id === defaultWorkflow) || all[0];
  if (wf) select.value = wf.workflow_id;
  note.textContent = wf ? workflowSummary(wf) : "";
  select.disabled = !(workflows && workflows.length);
  projectChanged();
}

function workflowSummary(wf) {
  return (wf.steps || []).map((s) => s.name).join(" → ");
}

export function createView(types) {
  const typeOptions = types.map((t) => h("option", { value: t }, t));
  const form = h("form", { id: "create-form", class: "card form", novalidate: true, onSubmit: submitCreate },
    h("h1", { class: "page-title" }, "New mission"),
    h("p", { class: "muted" }, "Describe what you want. The first agent turns this raw input into a structured brief you review before anything else happens."),
    h("div", { class: "form-error", id: "create-error", role: "alert", hidden: true }),
    h("label", { class: "field" },
      h("span", { class: "field-label" }, "Title"),
      h("input", { id: "create-title", name: "title", type: "text",
        placeholder: "e.g. Export missions as CSV", autocomplete: "off",
        "aria-describedby": "create-title-error" }),
      h("span", { class: "field-error", id: "create-title-error", hidden: true })),
    h("div", { class: "field-row" },
      h("label", { class: "field field-grow" },
        h("span", { class: "field-label" }, "Project"),
        h("select", { id: "create-project", name: "projectId", "aria-describedby": "create-project-note" },
          h("option", { value: "" }, "None: a plain mission")),
        h("span", { class: "field-hint", id: "create-project-note" })),
      h("div", { class: "field field-end" },
        h("button", { class: "button", type: "button", id: "link-repository", onClick: openLinkDialog }, "Link a repository…"))),
    h("label", { class: "field", id: "create-base-field", hidden: true },
      h("span", { class: "field-label" }, "Base ref (optional)"),
      h("input", { id: "create-base", name: "baseRef", type: "text", autocomplete: "off", spellcheck: "false",
        placeholder: "the repository's HEAD", class: "mono" })),
    h("div", { class: "field-row" },
      h("label", { class: "field" },
        h("span", { class: "field-label" }, "Type"),
        h("select", { id: "create-type", name: "type" }, typeOptions)),
      h("label", { class: "field field-grow" },
        h("span", { class: "field-label" }, "Workflow"),
        h("select", { id: "create-workflow", name: "workflowId", disabled: true,
          "aria-describedby": "create-workflow-note" },
          h("option", { value: "" }, "Loading workflows…")),
        h("span", { class: "field-hint", id: "create-workflow-note" }))),
    h("label", { class: "field" },
      h("span", { class: "field-label" }, "Raw input"),
      h("textarea", { id: "create-raw", name: "rawInput", rows: "12", spellcheck: "true",
        placeholder: "Paste the request, bug report, notes, logs… Markdown is fine.",
        "aria-describedby": "create-raw-error" }),
      h("span", { class: "field-error", id: "create-raw-error", hidden: true })),
    h("label", { class: "check" },
      h("input", { type: "checkbox", id: "create-start", checked: true }),
      " Start the first step right away"),
    h("div", { class: "form-actions" },
      h("a", { class: "button", href: "#/" }, "Cancel"),
      h("button", { class: "button button-primary", type: "submit", id: "create-submit" }, "Create mission")));
  queueMicrotask(() => {
    if (state.workflows || state.workflowsError) {
      fillWorkflowSelect(state.workflows, state.workflowsError, state.facts.defaultWorkflow);
    }
    const title = $("create-title");
    if (title) title.focus();
    loadProjects();
  });
  form.addEventListener("change", (event) => {
    if (event.target.id === "create-project") projectChanged();
    if (event.target.id !== "create-workflow") return;
    event.target.dataset.touched = "1";
    const wf = (state.workflows || []).find((w) => w.workflow_id === event.target.value);
    $("create-workflow-note").textContent = wf ? workflowSummary(wf) : "";
  });
  return form;
}

function setFieldError(id, message) {
  const el = $(`${id}-error`);
  const input = $(id);
  el.hidden = !message;
  el.textContent = message || "";
  if (message) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
}

async function submitCreate(event) {
  event.preventDefault();
  const title = $("create-title").value;
  const rawInput = $("create-raw").value;
  const type = $("create-type").value;
  const workflowId = $("create-workflow").value;
  const formError = $("create-error");
  formError.hidden = true;
  setFieldError("create-title", title.trim() ? null : "Give the mission a title.");
  setFieldError("create-raw", rawInput.trim() ? null : "Raw input cannot be empty: describe what you want.");
  if (!title.trim()) return $("create-title").focus();
  if (!rawInput.trim()) return $("create-raw").focus();
  const body = { title: title.trim(), type, rawInput };
  if (workflowId) body.workflowId = workflowId;
  const projectId = $("create-project").value;
  const baseRef = $("create-base").value.trim();
  if (projectId) body.projectId = projectId;
  if (projectId && baseRef) body.baseRef = baseRef;
  const button = $("create-submit");
  button.disabled = true;
  button.textContent = "Creating…";
  try {
    const meta = await api("POST", "/api/missions", body);
    if ($("create-start").checked && meta.status === "ready") {
      try {
        await api("POST", `/api/missions/${meta.mission_id}/continue`);
      } catch (err) {
        setActionError(`Created, but the first step did not start: ${err.message}`);
      }
    }
    await refreshList().catch(() => {});
    location.hash = `#/m/${meta.mission_id}`;
  } catch (err) {
    formError.textContent = err.message;
    formError.hidden = false;
    formError.focus?.();
  } finally {
    button.disabled = false;
    button.textContent = "Create mission";
  }
}
