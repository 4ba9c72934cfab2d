// The workflow's steps with their runs, and each run's log on demand.

import { $, h, replaceKeepFocus, sameSignature } from "./dom.js";
import { isRunning, isWaiting } from "./facts.js";
import { runDiffElement } from "./code.js";
import { absoluteTime, clockTime, duration, usageText } from "./format.js";
import { loadRunLog } from "./log.js";
import { redrawMission } from "./redraw.js";
import { closeRunLog, openRunLog, state, toggleRunDiff } from "./state.js";

const STEP_STATE_LABELS = {
  done: "Done", upcoming: "Upcoming", failed: "Failed", running: "Running",
  waiting: "Waiting for you", current: "Next",
};

function stepState(detail, index) {
  const done = detail.status === "completed" || index < detail.current_step;
  if (done) return "done";
  if (index > detail.current_step) return "upcoming";
  if (detail.status === "failed") return "failed";
  if (isRunning(detail.status)) return "running";
  if (isWaiting(detail.status)) return "waiting";
  return "current";
}

export function renderTimeline(detail, openLogs) {
  const el = $("mv-timeline");
  const steps = detail.workflow ? detail.workflow.steps : [];
  const logs = [...openLogs].map(([id, log]) => [id, log.gen, log.total, log.offset === null, log.error]);
  const runningRun = (detail.runs || []).some((r) => !r.finished_at);
  if (sameSignature(el, [detail.current_step, detail.status, detail.runs, steps.length, logs, [...state.openRunDiffs],
    runningRun ? Math.floor(Date.now() / 1000) : 0])) return;
  const opened = new Set([...el.querySelectorAll("details.run-result[open]")].map((d) => d.dataset.run));
  const scrolls = new Map([...el.querySelectorAll("pre[data-run]")].map((p) => [p.dataset.run, p.scrollTop]));
  replaceKeepFocus(el,
    h("h2", { class: "card-title", id: "timeline-title" }, "Workflow"),
    h("ol", { class: "timeline" }, steps.map((step, index) => timelineStep(detail, openLogs, step, index))));
  for (const d of el.querySelectorAll("details.run-result")) d.open = opened.has(d.dataset.run);
  for (const pre of el.querySelectorAll("pre[data-run]")) {
    if (scrolls.has(pre.dataset.run)) pre.scrollTop = scrolls.get(pre.dataset.run);
  }
}

function timelineStep(detail, openLogs, step, index) {
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
      runs.length ? h("ul", { class: "runs" }, runs.map((run) => runItem(detail, step, run, openLogs.get(run.run_id)))) : null));
}

function runItem(detail, step, run, log) {
  const open = Boolean(log);
  const diffOpen = Boolean(run.commit) && state.openRunDiffs.has(run.run_id);
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
        onClick: () => toggleLog(detail.mission_id, run) }, open ? "Hide log" : "Show log"),
      run.commit ? h("button", { class: "button button-quiet button-small run-diff-toggle", type: "button",
        "aria-expanded": String(diffOpen), "data-focus-key": `diff-${run.run_id}`,
        onClick: () => { toggleRunDiff(run.run_id); redrawMission(); } }, diffOpen ? "Hide changes" : "Show changes") : null),
    runFacts(step, run),
    diffOpen ? runDiffElement(detail.mission_id, run.run_id) : null,
    open ? h("pre", { class: "log run-log", "data-run": run.run_id, tabindex: "0", "aria-label": `Log of ${run.run_id}` },
      log.error ? log.error : log.offset === null ? "Loading…" : log.text || "(empty log)") : null);
}

/** A run's usage, its changes and the agent's final message (collapsed). */
function runFacts(step, run) {
  const parts = [];
  if (run.usage) parts.push(h("span", { class: "run-usage" }, usageText(run.usage)));
  if (run.changes) {
    parts.push(h("span", { class: "diff-counts" }, `${run.changes.files} file${run.changes.files === 1 ? "" : "s"} `,
      h("span", { class: "diff-plus" }, `+${run.changes.insertions}`), " ",
      h("span", { class: "diff-minus" }, `−${run.changes.deletions}`),
      run.commit ? h("span", { class: "mono muted" }, ` ${run.commit.slice(0, 8)}`) : null));
  } else if (step.workspaceMode === "codegen" && run.finished_at && run.exit_code === 0) {
    parts.push(h("span", { class: "muted" }, "no file changed"));
  }
  const line = parts.length ? h("div", { class: "run-facts muted" }, parts) : null;
  const result = run.result ? h("details", { class: "run-result", "data-run": run.run_id },
    h("summary", {}, "Agent's final message"),
    h("pre", { class: "run-result-text" }, run.result)) : null;
  return [line, result];
}

async function toggleLog(missionId, run) {
  if (state.openLogs.has(run.run_id)) {
    closeRunLog(run.run_id);
    redrawMission();
    return;
  }
  openRunLog(run.run_id);
  redrawMission();
  await loadRunLog(missionId, run.run_id, Boolean(run.finished_at)).catch(() => {});
  redrawMission();
}
