// The mission page: load the detail and lay out its parts (the buttons'
// actions are actions.js's).

import { continueMission, deleteMission, markCompleted } from "./actions.js";
import { api } from "./api.js";
import { renderArtifacts } from "./artifacts.js";
import { renderCode } from "./code.js";
import { $, h, replaceKeepFocus, sameSignature } from "./dom.js";
import { isRunning } from "./facts.js";
import { statusBadge, statusLabel, timeEl, usageText } from "./format.js";
import { renderGate } from "./gate.js";
import { refreshLiveLog, refreshOpenLogs, renderRunning } from "./log.js";
import { actionKind, activeRun, currentStep, gateOf, shownArtifact } from "./model.js";
import { setMissionView } from "./redraw.js";
import { selectArtifact, setActionError, setDetail, setDetailError, state, syncEditor } from "./state.js";
import { renderTimeline } from "./timeline.js";

/** Load the mission of the route, with its live and open logs, then show it. */
export async function refreshDetail() {
  const id = state.route.id;
  let detail;
  try {
    detail = await api("GET", `/api/missions/${encodeURIComponent(id)}`);
  } catch (err) {
    if (state.route.id !== id) return;
    if (err.status === 0) throw err;
    setDetailError(err.status === 404 ? `There is no mission ${id}.` : err.message);
    renderMission();
    return;
  }
  if (state.route.id !== id) return;
  setDetail(detail);
  syncEditor(gateOf(detail));
  selectArtifact(shownArtifact(detail, state.selectedArtifact));
  if (isRunning(detail.status)) await refreshLiveLog(detail);
  await refreshOpenLogs(detail);
  renderMission();
}

function missionSkeleton() {
  return h("article", { class: "mission", id: "mission-view" },
    h("a", { class: "back-link", href: "#/" }, "← All missions"),
    h("header", { class: "mission-header", id: "mv-header" }),
    h("div", { id: "mv-alerts" }),
    h("section", { id: "mv-action", class: "mv-action" }),
    h("section", { id: "mv-code", class: "card code-card", "aria-labelledby": "code-title", hidden: true }),
    h("div", { class: "mission-columns" },
      h("section", { id: "mv-timeline", class: "card timeline-card", "aria-labelledby": "timeline-title" }),
      h("section", { id: "mv-artifacts", class: "card artifacts-card", "aria-labelledby": "artifacts-title" })));
}

export function renderMission() {
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
  renderAlerts();
  renderAction(detail);
  renderCode(detail);
  renderTimeline(detail, state.openLogs);
  renderArtifacts(detail, state.selectedArtifact, state.artifactMode);
}

function renderHeader(detail) {
  const el = $("mv-header");
  const wf = detail.workflow || { name: detail.workflow_id, steps: [] };
  if (sameSignature(el, [detail.title, detail.status, detail.type, wf.name, detail.updated_at,
    detail.current_step, state.actionBusy, detail.usage])) return;
  const canComplete = detail.status !== "completed";
  replaceKeepFocus(el,
    h("div", { class: "mission-heading" },
      h("h1", { class: "mission-name" }, detail.title),
      h("div", { class: "mission-sub" },
        statusBadge(detail.status),
        h("span", { class: "chip" }, detail.type),
        h("span", { class: "muted" }, wf.name),
        h("span", { class: "muted mono" }, detail.mission_id),
        h("span", { class: "muted" }, "updated ", timeEl(detail.updated_at)),
        detail.usage ? h("span", { class: "muted usage", id: "mission-usage", title: "Tokens and cost over every run" },
          usageText(detail.usage)) : null)),
    h("div", { class: "mission-tools" },
      canComplete
        ? h("button", { class: "button button-small", type: "button", "data-focus-key": "mark-completed",
          disabled: state.actionBusy, onClick: markCompleted }, "Mark completed")
        : null,
      h("button", { class: "button button-small button-danger-quiet", type: "button", id: "mission-delete",
        "data-focus-key": "delete", disabled: state.actionBusy, onClick: deleteMission }, "Delete")));
}

function renderAlerts() {
  const el = $("mv-alerts");
  if (sameSignature(el, [state.actionError])) return;
  replaceKeepFocus(el, state.actionError
    ? h("div", { class: "alert alert-error", role: "alert" },
      h("span", {}, state.actionError),
      h("button", { class: "button button-quiet button-small", type: "button",
        onClick: () => { setActionError(null); renderMission(); } }, "Dismiss"))
    : null);
}

// The panel that says what happens now: running log, gate editor, failure, …
function renderAction(detail) {
  const el = $("mv-action");
  const step = currentStep(detail);
  const kind = actionKind(detail);
  const key = `${kind}:${detail.current_step}`;
  if (el.dataset.kind !== key) {
    el.dataset.kind = key;
    el.dataset.sig = "";
    delete el.dataset.editor;
    el.replaceChildren();
  }
  if (kind === "running") renderRunning(el, detail, step);
  else if (kind === "gate" && state.editor) renderGate(el, detail, step, state.editor);
  else if (kind === "failed") renderFailed(el, detail, step);
  else if (kind === "completed") renderCompleted(el, detail);
  else if (kind === "ready") renderReady(el, detail, step);
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
        h("p", { class: "eyebrow" }, statusLabel(detail.status)),
        h("h2", { class: "panel-title" }, step ? `Next: ${step.name}` : "Ready"),
        h("p", { class: "muted" }, "Nothing runs until you start it.")),
      h("div", { class: "panel-actions" },
        h("button", { class: "button button-primary", type: "button", "data-focus-key": "start",
          disabled: state.actionBusy, onClick: () => continueMission("Start") }, "Start")))));
}

setMissionView({ render: renderMission, refresh: refreshDetail });
