// haflow web UI: plain ES module, no build step, talks only to /api on this origin.
//
// Safety rule of this file: text that comes from the daemon (titles, logs,
// artifacts, errors) is only ever put into the page with textContent (through
// h()). The single exception is the HTML the daemon renders for artifacts
// (GET .../artifacts/:filename/html), which is sanitised server-side.

const POLL_MS = 2000;
const HEALTH_MS = 30000;
const TOKEN_KEY = "haflow.token";
const DEFAULT_WORKFLOW = "standard-feature"; // the daemon's default too
const MISSION_TYPES = ["feature", "fix", "bugfix", "hotfix", "enhance"];
const STATUS_LABELS = {
  draft: "Draft",
  ready: "Ready",
  waiting_human: "Needs review",
  waiting_code_review: "Code review",
  running_code_agent: "Running agent",
  running_root_llm: "Running LLM",
  failed: "Failed",
  completed: "Completed",
};
const RUNNING = new Set(["running_code_agent", "running_root_llm"]);
const WAITING = new Set(["waiting_human", "waiting_code_review"]);

// ---------------------------------------------------------------- DOM helpers

/** Create an element; strings among children become text nodes (never HTML). */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  appendChildren(el, children);
  return el;
}

function appendChildren(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace a container's children, keeping keyboard focus on the same control. */
function replaceKeepFocus(container, ...children) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.focusKey : null;
  container.replaceChildren();
  appendChildren(container, children);
  if (key) {
    const again = container.querySelector(`[data-focus-key="${CSS.escape(key)}"]`);
    if (again) again.focus({ preventScroll: true });
  }
}

const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------- formats

function parseTime(iso) {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : t;
}

function relativeTime(iso) {
  const t = parseTime(iso);
  if (t === null) return "";
  const s = Math.round((Date.now() - t) / 1000);
  if (s < 10) return "just now";
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const hr = Math.floor(m / 60);
  if (hr < 24) return `${hr} h ago`;
  const d = Math.floor(hr / 24);
  if (d < 30) return `${d} d ago`;
  return new Date(t).toLocaleDateString();
}

function absoluteTime(iso) {
  const t = parseTime(iso);
  return t === null ? "" : new Date(t).toLocaleString();
}

function clockTime(iso) {
  const t = parseTime(iso);
  return t === null ? "" : new Date(t).toLocaleTimeString();
}

function duration(fromIso, toIso) {
  const a = parseTime(fromIso);
  const b = toIso ? parseTime(toIso) : Date.now();
  if (a === null || b === null) return "";
  let s = Math.max(0, Math.round((b - a) / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  s %= 60;
  if (m < 60) return `${m} min ${s} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

function timeEl(iso) {
  return h("time", { datetime: iso, title: absoluteTime(iso), "data-relative": iso }, relativeTime(iso));
}

function refreshRelativeTimes() {
  for (const el of document.querySelectorAll("time[data-relative]")) {
    const text = relativeTime(el.dataset.relative);
    if (el.textContent !== text) el.textContent = text;
  }
}

function statusBadge(status) {
  const label = STATUS_LABELS[status] || status;
  return h("span", { class: `badge badge-${status}` },
    RUNNING.has(status) ? h("span", { class: "pulse", "aria-hidden": "true" }) : null,
    label);
}

// ----------------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let tokenPrompt = null;

/** Call the daemon; resolves to the envelope's data, throws ApiError otherwise. */
async function api(method, path, body) {
  for (;;) {
    const headers = { Accept: "application/json" };
    const token = localStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const init = { method, headers, cache: "no-store", credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch {
      throw new ApiError(0, "Cannot reach haflowd. Is the daemon still running?");
    }
    if (res.status === 401) {
      await askForToken(Boolean(token));
      continue;
    }
    let payload = null;
    try {
      payload = await res.json();
    } catch {
      payload = null;
    }
    if (!payload || typeof payload !== "object" || !("success" in payload)) {
      throw new ApiError(res.status, `Unexpected answer from haflowd (HTTP ${res.status}).`);
    }
    if (!payload.success) {
      throw new ApiError(res.status, payload.error || `Request failed (HTTP ${res.status}).`);
    }
    return payload.data;
  }
}

/** Ask for the access token once, however many requests are waiting for it. */
function askForToken(rejected) {
  if (tokenPrompt) return tokenPrompt;
  tokenPrompt = new Promise((resolve) => {
    const dialog = $("token-dialog");
    const input = $("token-input");
    $("token-error").hidden = !rejected;
    input.value = "";
    const onCancel = (event) => event.preventDefault();
    const onSubmit = (event) => {
      const value = input.value.trim();
      if (!value) {
        event.preventDefault();
        input.focus();
        return;
      }
      localStorage.setItem(TOKEN_KEY, value);
      dialog.removeEventListener("cancel", onCancel);
      $("token-form").removeEventListener("submit", onSubmit);
      tokenPrompt = null;
      resolve();
    };
    dialog.addEventListener("cancel", onCancel);
    $("token-form").addEventListener("submit", onSubmit);
    if (!dialog.open) dialog.showModal();
    input.focus();
  });
  return tokenPrompt;
}

// ------------------------------------------------------------------- dialogs

/** A modal yes/no question; resolves true when confirmed. */
function confirmDialog({ title, message, confirmLabel = "Confirm", danger = false }) {
  const dialog = $("confirm-dialog");
  $("confirm-title").textContent = title;
  $("confirm-message").textContent = message;
  const ok = $("confirm-ok");
  ok.textContent = confirmLabel;
  ok.className = danger ? "button button-danger" : "button button-primary";
  dialog.returnValue = "cancel";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
    $("confirm-cancel").focus();
  });
}

// --------------------------------------------------------------------- state

const state = {
  missions: null,
  workflows: null,
  workflowsError: null,
  route: { name: "home" },
  detail: null,
  detailError: null,
  health: undefined,
  editor: null, // { key, missionId, filename, saved, dirty, busy, message, tab, previewFor }
  selectedArtifact: null, // filename shown in the artifact browser
  artifactMode: "rendered",
  openLogs: new Map(), // run_id -> { text, error, loading }
  liveLog: { runId: null, text: "", follow: true },
  renderCache: new Map(), // `${mission}/${file}` -> { content, html }
  actionBusy: false,
  actionError: null,
};

function isDirty() {
  return Boolean(state.editor && state.editor.dirty);
}

function discardEdits() {
  if (state.editor) state.editor.dirty = false;
}

window.addEventListener("beforeunload", (event) => {
  if (isDirty()) {
    event.preventDefault();
    event.returnValue = "";
  }
});

// -------------------------------------------------------------------- routing

function parseRoute(hash) {
  const mission = /^#\/m\/([A-Za-z0-9_-]+)$/.exec(hash);
  if (mission) return { name: "mission", id: mission[1] };
  if (hash === "#/new") return { name: "new" };
  return { name: "home" };
}

let currentHash = location.hash;

async function confirmLeaveEdits() {
  if (!isDirty()) return true;
  const leave = await confirmDialog({
    title: "Discard unsaved edits?",
    message: `Your changes to ${state.editor.filename} are not saved. Leave and lose them?`,
    confirmLabel: "Discard edits",
    danger: true,
  });
  if (leave) discardEdits();
  return leave;
}

/** In-app navigation; asks first when the open editor holds unsaved edits. */
async function navigate(hash) {
  if (hash === currentHash) return;
  if (!(await confirmLeaveEdits())) return;
  location.hash = hash;
}

window.addEventListener("hashchange", async () => {
  const next = location.hash;
  if (next === currentHash) return;
  if (isDirty()) {
    // Back/forward or a typed URL: undo it until the user decides.
    history.replaceState(null, "", currentHash || "#/");
    if (!(await confirmLeaveEdits())) return;
    history.pushState(null, "", next);
  }
  currentHash = next;
  applyRoute();
});

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[href^='#/']");
  if (!link || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  navigate(link.getAttribute("href"));
});

function applyRoute() {
  const route = parseRoute(location.hash);
  const changedMission = route.name !== "mission" || state.route.id !== route.id;
  state.route = route;
  if (changedMission) {
    state.detail = null;
    state.detailError = null;
    state.editor = null;
    state.selectedArtifact = null;
    state.artifactMode = "rendered";
    state.openLogs.clear();
    state.liveLog = { runId: null, text: "", follow: true };
    state.actionError = null;
  }
  document.body.classList.remove("view-home", "view-new", "view-mission");
  document.body.classList.add(`view-${route.name}`);
  renderList();
  renderMain();
  if (route.name === "mission") refreshDetail().catch(() => {});
  if (route.name === "new") loadWorkflows();
  const main = $("main");
  if (route.name !== "home") main.focus({ preventScroll: true });
}

// -------------------------------------------------------------------- polling

let polling = false;

async function poll() {
  if (polling) return;
  polling = true;
  try {
    const work = [refreshList()];
    if (state.route.name === "mission") work.push(refreshDetail());
    await Promise.all(work);
    setConnectionError(null);
  } catch (err) {
    if (err instanceof ApiError && err.status === 0) setConnectionError(err.message);
  } finally {
    polling = false;
    refreshRelativeTimes();
  }
}

function setConnectionError(message) {
  const banner = $("connection-banner");
  banner.hidden = !message;
  banner.textContent = message ? `${message} Retrying every few seconds…` : "";
}

setInterval(() => {
  if (document.visibilityState === "visible") poll();
}, POLL_MS);

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") {
    poll();
    checkHealth();
  }
});

async function checkHealth() {
  let health;
  try {
    health = await api("GET", "/api/health");
  } catch (err) {
    health = err instanceof ApiError && err.status === 404 ? null : undefined;
  }
  if (health === undefined) return;
  state.health = health;
  const banner = $("health-banner");
  const problems = [];
  if (health && health.docker === false) {
    problems.push("Docker is not reachable: agent steps cannot start until it is.");
  }
  if (health && health.missions_dir_writable === false) {
    problems.push("The missions folder is not writable: new missions and edits will fail.");
  }
  banner.hidden = problems.length === 0;
  banner.textContent = problems.join(" ");
  $("topbar-status").textContent = health && health.version ? `haflowd ${health.version}` : "";
}

setInterval(() => {
  if (document.visibilityState === "visible") checkHealth();
}, HEALTH_MS);

// --------------------------------------------------------------- mission list

async function refreshList() {
  const missions = await api("GET", "/api/missions");
  state.missions = Array.isArray(missions) ? missions : [];
  renderList();
  if (state.route.name === "home") renderMain();
}

let listSignature = "";

function renderList() {
  const container = $("mission-list");
  const missions = state.missions;
  const waiting = (missions || []).filter((m) => WAITING.has(m.status));
  document.title = waiting.length ? `(${waiting.length}) haflow` : "haflow";
  document.body.dataset.missions = missions && missions.length ? "some" : "none";
  $("mission-count").textContent = missions ? String(missions.length) : "";
  const activeId = state.route.name === "mission" ? state.route.id : null;
  const signature = JSON.stringify([missions, activeId]);
  if (signature === listSignature) return;
  listSignature = signature;
  if (missions === null) return;
  if (missions.length === 0) {
    replaceKeepFocus(container, h("p", { class: "muted sidebar-empty" },
      "No missions yet. Use ", h("strong", {}, "New mission"), " to start one."));
    return;
  }
  const others = missions.filter((m) => !WAITING.has(m.status));
  const groups = [];
  if (waiting.length) groups.push(["Waiting for you", waiting, "group-waiting"]);
  if (others.length) groups.push([waiting.length ? "Other missions" : "All missions", others, ""]);
  replaceKeepFocus(container, groups.map(([label, items, cls]) =>
    h("section", { class: `mission-group ${cls}`, "aria-label": label },
      h("h3", { class: "group-title" }, label),
      h("ul", { class: "missions" }, items.map((m) => missionItem(m, m.mission_id === activeId))))));
}

function missionItem(m, active) {
  return h("li", {},
    h("a", {
      class: `mission-item${active ? " active" : ""}${WAITING.has(m.status) ? " waiting" : ""}`,
      href: `#/m/${m.mission_id}`,
      "aria-current": active ? "page" : null,
      "data-focus-key": `mission-${m.mission_id}`,
    },
    h("span", { class: "mission-item-top" },
      h("span", { class: "mission-title" }, m.title),
      statusBadge(m.status)),
    h("span", { class: "mission-item-meta" },
      h("span", { class: "chip" }, m.type),
      h("span", { class: "mission-step" }, m.current_step_name || ""),
      h("span", { class: "dot", "aria-hidden": "true" }, "·"),
      timeEl(m.updated_at))));
}

// ------------------------------------------------------------------ main view

function renderMain() {
  const main = $("main");
  if (state.route.name === "new") {
    if (!main.querySelector("#create-form")) main.replaceChildren(createView());
    return;
  }
  if (state.route.name === "mission") {
    renderMission();
    return;
  }
  const signature = `home:${state.missions === null ? "?" : state.missions.length}`;
  if (main.dataset.view === signature) return;
  main.dataset.view = signature;
  main.replaceChildren(homeView());
}

function homeView() {
  const missions = state.missions;
  if (missions === null) return h("div", { class: "empty" }, h("p", { class: "muted" }, "Loading…"));
  if (missions.length === 0) {
    return h("div", { class: "empty" },
      h("div", { class: "empty-mark", "aria-hidden": "true" }, "h"),
      h("h1", {}, "Start your first mission"),
      h("p", {}, "A mission takes a rough request (a feature idea, a bug report, a fix) through a workflow: " +
        "agents clean it up, research it, plan it and implement it, each in its own container, and " +
        "the mission stops at every review gate so you can read, edit and approve what they wrote."),
      h("ol", { class: "empty-steps" },
        h("li", {}, "Press ", h("strong", {}, "New mission"), "."),
        h("li", {}, "Give it a title, pick its type and paste the raw input."),
        h("li", {}, "Watch the agents run; review and approve each artifact when asked.")),
      h("a", { class: "button button-primary", href: "#/new" }, "New mission"));
  }
  const waiting = missions.filter((m) => WAITING.has(m.status)).length;
  const running = missions.filter((m) => RUNNING.has(m.status)).length;
  return h("div", { class: "empty" },
    h("h1", {}, waiting ? `${waiting} mission${waiting > 1 ? "s" : ""} waiting for you` : "Pick a mission"),
    h("p", { class: "muted" },
      `${missions.length} mission${missions.length > 1 ? "s" : ""}, ${running} running. ` +
      "Choose one from the list, or start a new one."),
    h("a", { class: "button button-primary", href: "#/new" }, "New mission"));
}

// ---------------------------------------------------------------- create form

async function loadWorkflows() {
  if (state.workflows) return;
  try {
    state.workflows = await api("GET", "/api/workflows");
    state.workflowsError = null;
  } catch (err) {
    state.workflowsError = err.message;
  }
  fillWorkflowSelect();
}

function fillWorkflowSelect() {
  const select = $("create-workflow");
  if (!select) return;
  const note = $("create-workflow-note");
  select.replaceChildren();
  if (state.workflowsError) {
    select.append(h("option", { value: "" }, "Server default"));
    note.textContent = `Could not load workflows: ${state.workflowsError}`;
    return;
  }
  for (const wf of state.workflows || []) {
    const count = wf.steps ? wf.steps.length : 0;
    select.append(h("option", { value: wf.workflow_id }, `${wf.name} (${count} steps)`));
  }
  const workflows = state.workflows || [];
  const wf = workflows.find((w) => w.workflow_id === DEFAULT_WORKFLOW) || workflows[0];
  if (wf) select.value = wf.workflow_id;
  note.textContent = wf ? workflowSummary(wf) : "";
  select.disabled = !(state.workflows && state.workflows.length);
}

function workflowSummary(wf) {
  return (wf.steps || []).map((s) => s.name).join(" → ");
}

function createView() {
  const typeOptions = MISSION_TYPES.map((t) => h("option", { value: t }, t));
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
    fillWorkflowSelectIfReady();
    const title = $("create-title");
    if (title) title.focus();
  });
  form.addEventListener("change", (event) => {
    if (event.target.id !== "create-workflow") return;
    const wf = (state.workflows || []).find((w) => w.workflow_id === event.target.value);
    $("create-workflow-note").textContent = wf ? workflowSummary(wf) : "";
  });
  return form;
}

function fillWorkflowSelectIfReady() {
  if (state.workflows || state.workflowsError) fillWorkflowSelect();
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
  const button = $("create-submit");
  button.disabled = true;
  button.textContent = "Creating…";
  try {
    const meta = await api("POST", "/api/missions", body);
    if ($("create-start").checked && meta.status === "ready") {
      try {
        await api("POST", `/api/missions/${meta.mission_id}/continue`);
      } catch (err) {
        state.actionError = `Created, but the first step did not start: ${err.message}`;
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

// ---------------------------------------------------------------- mission view

async function refreshDetail() {
  const id = state.route.id;
  let detail;
  try {
    detail = await api("GET", `/api/missions/${encodeURIComponent(id)}`);
  } catch (err) {
    if (state.route.id !== id) return;
    if (err.status === 0) throw err;
    state.detailError = err.status === 404 ? `There is no mission ${id}.` : err.message;
    state.detail = null;
    renderMission();
    return;
  }
  if (state.route.id !== id) return;
  state.detail = detail;
  state.detailError = null;
  if (RUNNING.has(detail.status)) await refreshLiveLog(detail);
  await refreshOpenLogs(detail);
  renderMission();
}

function currentStep(detail) {
  const steps = detail.workflow ? detail.workflow.steps : [];
  return detail.current_step < steps.length ? steps[detail.current_step] : null;
}

function activeRun(detail) {
  const step = currentStep(detail);
  const runs = (detail.runs || []).filter((r) => !step || r.step_id === step.step_id);
  const open = runs.filter((r) => !r.finished_at);
  return open.length ? open[open.length - 1] : runs[runs.length - 1] || null;
}

async function fetchRunLog(missionId, runId) {
  return api("GET", `/api/missions/${encodeURIComponent(missionId)}/runs/${encodeURIComponent(runId)}/log`);
}

async function refreshLiveLog(detail) {
  const run = activeRun(detail);
  const live = state.liveLog;
  if (!run) {
    live.runId = null;
    live.text = detail.current_log_tail || "";
    return;
  }
  if (live.runId !== run.run_id) {
    live.runId = run.run_id;
    live.follow = true;
  }
  try {
    const text = await fetchRunLog(detail.mission_id, run.run_id);
    live.text = typeof text === "string" ? text : "";
  } catch (err) {
    if (err.status === 0) throw err;
    live.text = detail.current_log_tail || ""; // no log route: the tail in the detail
  }
}

async function refreshOpenLogs(detail) {
  const running = new Set((detail.runs || []).filter((r) => !r.finished_at).map((r) => r.run_id));
  const loads = [];
  for (const [runId, entry] of state.openLogs) {
    if (entry.text !== null && !running.has(runId)) continue;
    loads.push(loadRunLog(detail.mission_id, runId, false));
  }
  await Promise.all(loads);
}

async function loadRunLog(missionId, runId, render = true) {
  const entry = state.openLogs.get(runId) || { text: null, error: null };
  state.openLogs.set(runId, entry);
  try {
    const text = await fetchRunLog(missionId, runId);
    entry.text = typeof text === "string" ? text : "";
    entry.error = null;
  } catch (err) {
    entry.error = err.status === 404
      ? "This run's log is not available."
      : err.message;
  }
  if (render) renderMission();
}

function missionSkeleton() {
  return h("article", { class: "mission", id: "mission-view" },
    h("a", { class: "back-link", href: "#/" }, "← All missions"),
    h("header", { class: "mission-header", id: "mv-header" }),
    h("div", { id: "mv-alerts" }),
    h("section", { id: "mv-action", class: "mv-action" }),
    h("div", { class: "mission-columns" },
      h("section", { id: "mv-timeline", class: "card timeline-card", "aria-labelledby": "timeline-title" }),
      h("section", { id: "mv-artifacts", class: "card artifacts-card", "aria-labelledby": "artifacts-title" })));
}

function renderMission() {
  const main = $("main");
  if (state.route.name !== "mission") return;
  if (state.detailError) {
    main.dataset.view = "mission-error";
    main.replaceChildren(h("div", { class: "empty" },
      h("h1", {}, "Mission not available"),
      h("p", { class: "muted" }, state.detailError),
      h("a", { class: "button", href: "#/" }, "Back to missions")));
    return;
  }
  const detail = state.detail;
  if (!detail) {
    if (main.dataset.view !== "mission-loading") {
      main.dataset.view = "mission-loading";
      main.replaceChildren(h("div", { class: "empty" }, h("p", { class: "muted" }, "Loading mission…")));
    }
    return;
  }
  if (main.dataset.view !== `mission:${detail.mission_id}`) {
    main.dataset.view = `mission:${detail.mission_id}`;
    main.replaceChildren(missionSkeleton());
  }
  renderHeader(detail);
  renderAlerts(detail);
  renderAction(detail);
  renderTimeline(detail);
  renderArtifacts(detail);
}

function sameSignature(el, value) {
  const signature = JSON.stringify(value);
  if (el.dataset.sig === signature) return true;
  el.dataset.sig = signature;
  return false;
}

function renderHeader(detail) {
  const el = $("mv-header");
  const wf = detail.workflow || { name: detail.workflow_id, steps: [] };
  if (sameSignature(el, [detail.title, detail.status, detail.type, wf.name, detail.updated_at,
    detail.current_step, state.actionBusy])) return;
  const canComplete = detail.status !== "completed";
  replaceKeepFocus(el,
    h("div", { class: "mission-heading" },
      h("h1", { class: "mission-name" }, detail.title),
      h("div", { class: "mission-sub" },
        statusBadge(detail.status),
        h("span", { class: "chip" }, detail.type),
        h("span", { class: "muted" }, wf.name),
        h("span", { class: "muted mono" }, detail.mission_id),
        h("span", { class: "muted" }, "updated ", timeEl(detail.updated_at)))),
    h("div", { class: "mission-tools" },
      canComplete
        ? h("button", { class: "button button-small", type: "button", "data-focus-key": "mark-completed",
          disabled: state.actionBusy, onClick: markCompleted }, "Mark completed")
        : null));
}

function renderAlerts(detail) {
  const el = $("mv-alerts");
  if (sameSignature(el, [state.actionError])) return;
  replaceKeepFocus(el, state.actionError
    ? h("div", { class: "alert alert-error", role: "alert" },
      h("span", {}, state.actionError),
      h("button", { class: "button button-quiet button-small", type: "button",
        onClick: () => { state.actionError = null; renderMission(); } }, "Dismiss"))
    : null);
}

async function runAction(label, fn) {
  if (state.actionBusy) return;
  state.actionBusy = true;
  state.actionError = null;
  renderMission();
  try {
    await fn();
  } catch (err) {
    state.actionError = `${label} failed: ${err.message}`;
  } finally {
    state.actionBusy = false;
    await refreshDetail().catch(() => {});
    refreshList().catch(() => {});
    renderMission();
  }
}

function missionPath(suffix) {
  return `/api/missions/${encodeURIComponent(state.detail.mission_id)}${suffix}`;
}

async function markCompleted() {
  const ok = await confirmDialog({
    title: "Mark this mission completed?",
    message: "Remaining steps are skipped and the mission stops here. Its artifacts stay available.",
    confirmLabel: "Mark completed",
  });
  if (!ok) return;
  if (!(await confirmLeaveEdits())) return;
  await runAction("Mark completed", () => api("POST", missionPath("/mark-completed")));
}

function continueMission(label) {
  return runAction(label, () => api("POST", missionPath("/continue")));
}

async function cancelRun() {
  const ok = await confirmDialog({
    title: "Cancel this run?",
    message: "The agent's container is stopped. The step is marked failed and you can retry it.",
    confirmLabel: "Cancel run",
    danger: true,
  });
  if (!ok) return;
  await runAction("Cancel", async () => {
    try {
      await api("POST", missionPath("/cancel"));
    } catch (err) {
      if (err.status === 409) throw new ApiError(409, "nothing is running any more.");
      throw err;
    }
  });
}

// The panel that says what happens now: running log, gate editor, failure, …
function renderAction(detail) {
  const el = $("mv-action");
  const step = currentStep(detail);
  const kind = RUNNING.has(detail.status) ? "running"
    : WAITING.has(detail.status) ? "gate"
      : detail.status === "failed" ? "failed"
        : detail.status === "completed" ? "completed"
          : "ready";
  const key = `${kind}:${detail.current_step}`;
  if (kind !== "gate" && state.editor) state.editor = null; // the gate was passed
  if (el.dataset.kind !== key) {
    el.dataset.kind = key;
    el.dataset.sig = "";
    el.replaceChildren();
  }
  if (kind === "running") renderRunning(el, detail, step);
  else if (kind === "gate") renderGate(el, detail, step);
  else if (kind === "failed") renderFailed(el, detail, step);
  else if (kind === "completed") renderCompleted(el, detail);
  else renderReady(el, detail, step);
}

function renderRunning(el, detail, step) {
  if (!el.firstChild) {
    const pre = h("pre", { class: "log live-log", id: "live-log", tabindex: "0", "aria-label": "Live log" });
    pre.addEventListener("scroll", () => {
      const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
      if (state.liveLog.follow !== atBottom) {
        state.liveLog.follow = atBottom;
        updateFollowNote();
      }
    });
    el.append(h("div", { class: "card panel panel-running" },
      h("div", { class: "panel-head" },
        h("div", {},
          h("h2", { class: "panel-title", id: "live-title" }),
          h("p", { class: "muted", id: "live-sub" })),
        h("button", { class: "button button-danger", type: "button", id: "cancel-run",
          "data-focus-key": "cancel", onClick: cancelRun }, "Cancel run")),
      pre,
      h("div", { class: "log-foot" },
        h("span", { class: "muted", id: "follow-note", "aria-live": "polite" }),
        h("button", { class: "button button-quiet button-small", type: "button", id: "follow-btn",
          onClick: () => {
            state.liveLog.follow = true;
            pre.scrollTop = pre.scrollHeight;
            updateFollowNote();
          } }, "Jump to latest"))));
  }
  const run = activeRun(detail);
  $("live-title").textContent = step ? `${step.name} is running` : "Running";
  $("live-sub").textContent = [
    step && step.agent ? `Agent ${step.agent}` : null,
    run ? `started ${clockTime(run.started_at)} · ${duration(run.started_at)}` : null,
  ].filter(Boolean).join(" · ");
  $("cancel-run").disabled = state.actionBusy;
  const pre = $("live-log");
  const text = state.liveLog.text || "Waiting for output…";
  if (pre.textContent !== text) {
    pre.textContent = text;
    if (state.liveLog.follow) pre.scrollTop = pre.scrollHeight;
  }
  updateFollowNote();
}

function updateFollowNote() {
  const note = $("follow-note");
  const btn = $("follow-btn");
  if (!note) return;
  note.textContent = state.liveLog.follow ? "Following the log" : "Paused: scrolled up";
  btn.hidden = state.liveLog.follow;
}

function gateArtifact(step) {
  if (!step) return null;
  return step.reviewArtifact || step.inputArtifact || step.outputArtifact || null;
}

function renderGate(el, detail, step) {
  const filename = gateArtifact(step);
  const content = filename ? detail.artifacts[filename] : undefined;
  const key = `${detail.mission_id}:${detail.current_step}:${filename}`;
  let ed = state.editor;
  if (!ed || ed.key !== key) {
    ed = state.editor = {
      key, missionId: detail.mission_id, filename, saved: content ?? "", dirty: false,
      busy: false, message: null, error: null, tab: "preview", previewFor: null, previewHtml: null,
    };
    el.replaceChildren();
  } else if (!ed.dirty && !ed.busy && content !== undefined && content !== ed.saved) {
    ed.saved = content; // changed on disk by someone else; nothing local to lose
    const area = $("gate-editor");
    if (area) area.value = content;
  }
  if (!el.firstChild) el.append(gatePanel(detail, step, ed, content));
  updateGate(detail, ed, content);
}

function gatePanel(detail, step, ed, content) {
  const editor = h("textarea", { class: "editor", id: "gate-editor", spellcheck: "true",
    "aria-label": `Edit ${ed.filename}` });
  editor.value = content ?? "";
  editor.addEventListener("input", () => {
    ed.dirty = editor.value !== ed.saved;
    ed.message = null;
    updateGate(state.detail, ed, state.detail.artifacts[ed.filename]);
  });
  editor.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "s") {
      event.preventDefault();
      saveArtifact();
    }
  });
  const tab = (name, label) => h("button", {
    class: "tab", type: "button", role: "tab", id: `gate-tab-${name}`, "data-focus-key": `tab-${name}`,
    "aria-controls": `gate-pane-${name}`,
    onClick: () => {
      ed.tab = name;
      updateGate(state.detail, ed, state.detail.artifacts[ed.filename]);
      if (name === "edit") editor.focus();
    },
    onKeydown: (event) => {
      if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
        ed.tab = ed.tab === "edit" ? "preview" : "edit";
        updateGate(state.detail, ed, state.detail.artifacts[ed.filename]);
        $(`gate-tab-${ed.tab}`).focus();
      }
    },
  }, label);
  return h("div", { class: "card panel panel-gate" },
    h("div", { class: "panel-head" },
      h("div", {},
        h("p", { class: "eyebrow" }, "Your review"),
        h("h2", { class: "panel-title" }, step ? step.name : "Review"),
        h("p", { class: "muted" }, ed.filename
          ? ["Read ", h("span", { class: "mono" }, ed.filename), ", fix what is wrong, then approve to continue."]
          : "This gate names no artifact. Approve to continue.")),
      h("div", { class: "panel-actions" },
        h("span", { class: "save-state", id: "save-state", "aria-live": "polite" }),
        h("button", { class: "button", type: "button", id: "gate-save", "data-focus-key": "save",
          onClick: saveArtifact }, "Save"),
        h("button", { class: "button button-primary", type: "button", id: "gate-approve",
          "data-focus-key": "approve", onClick: approveGate }, "Approve & continue"))),
    h("div", { class: "alert alert-error", id: "gate-error", role: "alert", hidden: true }),
    ed.filename ? h("div", { class: "tabs", role: "tablist", "aria-label": "Artifact view" },
      tab("preview", "Preview"), tab("edit", "Edit")) : null,
    ed.filename ? h("div", { class: "pane", id: "gate-pane-preview", role: "tabpanel", "aria-labelledby": "gate-tab-preview" },
      h("p", { class: "muted pane-note", id: "preview-note", hidden: true },
        "Preview shows the last saved version. Save to see your edits here."),
      h("div", { class: "rendered", id: "gate-preview" })) : null,
    ed.filename ? h("div", { class: "pane", id: "gate-pane-edit", role: "tabpanel", "aria-labelledby": "gate-tab-edit" },
      editor) : null);
}

function updateGate(detail, ed, content) {
  const saveBtn = $("gate-save");
  if (!saveBtn) return;
  const missing = ed.filename && content === undefined;
  saveBtn.disabled = ed.busy || !ed.dirty;
  saveBtn.hidden = !ed.filename;
  $("gate-approve").disabled = ed.busy || state.actionBusy;
  $("gate-approve").textContent = ed.dirty ? "Save, approve & continue" : "Approve & continue";
  const stateEl = $("save-state");
  stateEl.textContent = ed.busy ? "Saving…" : ed.dirty ? "Unsaved changes" : ed.message || "";
  stateEl.className = `save-state${ed.dirty ? " dirty" : ""}`;
  const err = $("gate-error");
  err.hidden = !ed.error && !missing;
  err.textContent = ed.error || (missing ? `${ed.filename} was not produced by the previous step. Retry it or edit the artifact before approving.` : "");
  if (!ed.filename) return;
  for (const name of ["preview", "edit"]) {
    const selected = ed.tab === name;
    $(`gate-tab-${name}`).setAttribute("aria-selected", String(selected));
    $(`gate-tab-${name}`).tabIndex = selected ? 0 : -1;
    $(`gate-pane-${name}`).hidden = !selected;
  }
  $("preview-note").hidden = !ed.dirty;
  if (ed.previewFor !== (content ?? "")) {
    ed.previewFor = content ?? "";
    renderArtifactInto($("gate-preview"), detail.mission_id, ed.filename, content ?? "");
  }
}

async function saveArtifact() {
  const ed = state.editor;
  if (!ed || !ed.dirty || ed.busy) return true;
  const value = $("gate-editor").value;
  ed.busy = true;
  ed.error = null;
  updateGate(state.detail, ed, state.detail.artifacts[ed.filename]);
  try {
    await api("PUT", `/api/missions/${encodeURIComponent(ed.missionId)}/artifacts/${encodeURIComponent(ed.filename)}`,
      { content: value });
    ed.saved = value;
    ed.dirty = $("gate-editor").value !== value;
    ed.message = `Saved at ${new Date().toLocaleTimeString()}`;
    if (state.detail && state.detail.mission_id === ed.missionId) state.detail.artifacts[ed.filename] = value;
    return true;
  } catch (err) {
    ed.error = `Could not save ${ed.filename}: ${err.message}`;
    return false;
  } finally {
    ed.busy = false;
    if (state.detail) {
      updateGate(state.detail, ed, state.detail.artifacts[ed.filename]);
      renderArtifacts(state.detail);
    }
  }
}

async function approveGate() {
  const ed = state.editor;
  if (ed && ed.dirty && !(await saveArtifact())) return;
  await continueMission("Approve");
}

function renderFailed(el, detail, step) {
  const errors = detail.errors || [];
  const last = detail.last_error || errors[errors.length - 1] || "The step failed without a message.";
  if (sameSignature(el, [last, errors, state.actionBusy, step && step.step_id])) return;
  const run = activeRun(detail);
  const earlier = errors.filter((e, i) => !(i === errors.length - 1 && e === last));
  replaceKeepFocus(el, h("div", { class: "card panel panel-failed", role: "alert" },
    h("div", { class: "panel-head" },
      h("div", {},
        h("p", { class: "eyebrow" }, "Failed"),
        h("h2", { class: "panel-title" }, step ? `${step.name} failed` : "The mission failed"),
        run && run.exit_code !== undefined
          ? h("p", { class: "muted" }, `Last run ${run.run_id} exited with code ${run.exit_code}.`) : null),
      h("div", { class: "panel-actions" },
        h("button", { class: "button button-primary", type: "button", "data-focus-key": "retry",
          disabled: state.actionBusy, onClick: () => continueMission("Retry") }, "Retry step"))),
    h("pre", { class: "error-text" }, last),
    earlier.length ? h("details", { class: "earlier" },
      h("summary", {}, `${earlier.length} earlier error${earlier.length > 1 ? "s" : ""}`),
      h("ul", {}, earlier.map((e) => h("li", {}, h("pre", { class: "error-text small" }, e))))) : null));
}

function renderCompleted(el, detail) {
  if (sameSignature(el, [detail.updated_at])) return;
  replaceKeepFocus(el, h("div", { class: "card panel panel-completed" },
    h("p", { class: "eyebrow" }, "Done"),
    h("h2", { class: "panel-title" }, "Mission completed"),
    h("p", { class: "muted" }, "Completed ", timeEl(detail.updated_at),
      ". Every artifact stays browsable below.")));
}

function renderReady(el, detail, step) {
  if (sameSignature(el, [detail.status, step && step.step_id, state.actionBusy])) return;
  replaceKeepFocus(el, h("div", { class: "card panel panel-ready" },
    h("div", { class: "panel-head" },
      h("div", {},
        h("p", { class: "eyebrow" }, STATUS_LABELS[detail.status] || detail.status),
        h("h2", { class: "panel-title" }, step ? `Next: ${step.name}` : "Ready"),
        h("p", { class: "muted" }, "Nothing runs until you start it.")),
      h("div", { class: "panel-actions" },
        h("button", { class: "button button-primary", type: "button", "data-focus-key": "start",
          disabled: state.actionBusy, onClick: () => continueMission("Start") }, "Start")))));
}

// ------------------------------------------------------------------- timeline

function stepState(detail, index) {
  const done = detail.status === "completed" || index < detail.current_step;
  if (done) return "done";
  if (index > detail.current_step) return "upcoming";
  if (detail.status === "failed") return "failed";
  if (RUNNING.has(detail.status)) return "running";
  if (WAITING.has(detail.status)) return "waiting";
  return "current";
}

const STEP_STATE_LABELS = {
  done: "Done", upcoming: "Upcoming", failed: "Failed", running: "Running",
  waiting: "Waiting for you", current: "Next",
};

function renderTimeline(detail) {
  const el = $("mv-timeline");
  const steps = detail.workflow ? detail.workflow.steps : [];
  const logs = [...state.openLogs].map(([id, e]) => [id, e.text, e.error]);
  const runningRun = (detail.runs || []).some((r) => !r.finished_at);
  if (sameSignature(el, [detail.current_step, detail.status, detail.runs, steps.length, logs,
    runningRun ? Math.floor(Date.now() / 1000) : 0])) return;
  const scrolls = new Map([...el.querySelectorAll("pre[data-run]")].map((p) => [p.dataset.run, p.scrollTop]));
  replaceKeepFocus(el,
    h("h2", { class: "card-title", id: "timeline-title" }, "Workflow"),
    h("ol", { class: "timeline" }, steps.map((step, index) => timelineStep(detail, step, index))));
  for (const pre of el.querySelectorAll("pre[data-run]")) {
    if (scrolls.has(pre.dataset.run)) pre.scrollTop = scrolls.get(pre.dataset.run);
  }
}

function timelineStep(detail, step, index) {
  const st = stepState(detail, index);
  const runs = (detail.runs || []).filter((r) => r.step_id === step.step_id);
  const isGate = step.type === "human-gate";
  const io = isGate
    ? [step.reviewArtifact || step.inputArtifact].filter(Boolean)
    : [step.inputArtifact, step.outputArtifact].filter(Boolean);
  return h("li", { class: `step step-${st}`, "aria-current": ["running", "waiting", "failed", "current"].includes(st) ? "step" : null },
    h("span", { class: "step-marker", "aria-hidden": "true" }, st === "done" ? "✓" : st === "failed" ? "!" : String(index + 1)),
    h("div", { class: "step-body" },
      h("div", { class: "step-head" },
        h("span", { class: "step-name" }, step.name),
        h("span", { class: `step-state step-state-${st}` }, STEP_STATE_LABELS[st])),
      h("div", { class: "step-meta muted" },
        isGate ? "Human review" : step.agent ? `Agent · ${step.agent}` : step.type,
        io.length ? [" · ", h("span", { class: "mono" }, io.join(" → "))] : null),
      runs.length ? h("ul", { class: "runs" }, runs.map((run) => runItem(detail, run))) : null));
}

function runItem(detail, run) {
  const entry = state.openLogs.get(run.run_id);
  const open = Boolean(entry);
  const exit = run.exit_code === undefined ? null : run.exit_code;
  const outcome = !run.finished_at ? h("span", { class: "run-exit run-live" }, "running")
    : exit === 0 ? h("span", { class: "run-exit run-ok" }, "exit 0")
      : h("span", { class: "run-exit run-bad" }, exit === null ? "no exit code" : `exit ${exit}`);
  return h("li", { class: "run" },
    h("div", { class: "run-line" },
      h("span", { class: "mono run-id" }, run.run_id),
      h("span", { class: "muted", title: absoluteTime(run.started_at) }, clockTime(run.started_at)),
      h("span", { class: "muted" }, duration(run.started_at, run.finished_at)),
      outcome,
      h("button", { class: "button button-quiet button-small", type: "button",
        "aria-expanded": String(open), "data-focus-key": `log-${run.run_id}`,
        onClick: () => toggleLog(detail.mission_id, run.run_id) }, open ? "Hide log" : "Show log")),
    open ? h("pre", { class: "log run-log", "data-run": run.run_id, tabindex: "0", "aria-label": `Log of ${run.run_id}` },
      entry.error ? entry.error : entry.text === null ? "Loading…" : entry.text || "(empty log)") : null);
}

function toggleLog(missionId, runId) {
  if (state.openLogs.has(runId)) {
    state.openLogs.delete(runId);
    renderMission();
    return;
  }
  state.openLogs.set(runId, { text: null, error: null });
  renderMission();
  loadRunLog(missionId, runId);
}

// ------------------------------------------------------------------ artifacts

async function renderArtifactInto(container, missionId, filename, content) {
  const cacheKey = `${missionId}/${filename}`;
  const cached = state.renderCache.get(cacheKey);
  container.dataset.pending = `${cacheKey}:${content.length}`;
  let html = cached && cached.content === content ? cached.html : null;
  if (html === null) {
    try {
      const data = await api("GET",
        `/api/missions/${encodeURIComponent(missionId)}/artifacts/${encodeURIComponent(filename)}/html`);
      html = data && typeof data.html === "string" ? data.html : null;
    } catch {
      html = null;
    }
    if (html !== null) state.renderCache.set(cacheKey, { content, html });
  }
  if (container.dataset.pending !== `${cacheKey}:${content.length}`) return;
  if (html === null) {
    // No server rendering available: show the text, escaped by textContent.
    container.replaceChildren(h("pre", { class: "artifact-text" }, content));
  } else {
    container.innerHTML = html; // sanitised by haflowd (render.py); the only innerHTML here
  }
  container.classList.toggle("is-empty", !content.trim());
}

function renderArtifacts(detail) {
  const el = $("mv-artifacts");
  const names = Object.keys(detail.artifacts || {});
  if (!state.selectedArtifact || !names.includes(state.selectedArtifact)) {
    state.selectedArtifact = names.includes("raw-input.md") ? "raw-input.md" : names[0] || null;
  }
  const sel = state.selectedArtifact;
  const content = sel ? detail.artifacts[sel] : "";
  if (sameSignature(el, [names, sel, content, state.artifactMode])) return;
  if (!names.length) {
    replaceKeepFocus(el, h("h2", { class: "card-title", id: "artifacts-title" }, "Artifacts"),
      h("p", { class: "muted" }, "No artifacts yet."));
    return;
  }
  const body = h("div", { class: "rendered artifact-body", id: "artifact-body" });
  replaceKeepFocus(el,
    h("div", { class: "card-head" },
      h("h2", { class: "card-title", id: "artifacts-title" }, "Artifacts"),
      h("div", { class: "segmented", role: "group", "aria-label": "Display" },
        ["rendered", "source"].map((mode) => h("button", {
          class: "seg", type: "button", "aria-pressed": String(state.artifactMode === mode),
          "data-focus-key": `mode-${mode}`,
          onClick: () => { state.artifactMode = mode; renderArtifacts(state.detail); },
        }, mode === "rendered" ? "Rendered" : "Source")))),
    h("div", { class: "artifact-list", role: "group", "aria-label": "Artifact files" },
      names.map((name) => h("button", {
        class: "artifact-chip", type: "button", "aria-pressed": String(name === sel),
        "data-focus-key": `artifact-${name}`,
        onClick: () => { state.selectedArtifact = name; renderArtifacts(state.detail); },
      }, name))),
    body);
  if (state.artifactMode === "source") body.replaceChildren(h("pre", { class: "artifact-text" }, content));
  else renderArtifactInto(body, detail.mission_id, sel, content);
}

// ---------------------------------------------------------------------- start

applyRoute();
poll();
checkHealth();
