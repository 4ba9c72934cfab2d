// Questions about a mission's detail (pure: data in, answer out).

import { isRunning, isWaiting } from "./facts.js";

export function currentStep(detail) {
  const steps = detail.workflow ? detail.workflow.steps : [];
  return detail.current_step < steps.length ? steps[detail.current_step] : null;
}

/** The run of the current step still going, else its latest one. */
export function activeRun(detail) {
  const step = currentStep(detail);
  const runs = (detail.runs || []).filter((r) => !step || r.step_id === step.step_id);
  const open = runs.filter((r) => !r.finished_at);
  return open.length ? open[open.length - 1] : runs[runs.length - 1] || null;
}

export function gateArtifact(step) {
  if (!step) return null;
  return step.reviewArtifact || step.inputArtifact || step.outputArtifact || null;
}

/** Which panel says what happens now: running, gate, failed, completed or ready. */
export function actionKind(detail) {
  if (isRunning(detail.status)) return "running";
  if (isWaiting(detail.status)) return "gate";
  if (detail.status === "failed") return "failed";
  if (detail.status === "completed") return "completed";
  return "ready";
}

/** The review gate the mission waits at: its editor key, file and content; null elsewhere. */
export function gateOf(detail) {
  if (actionKind(detail) !== "gate") return null;
  const filename = gateArtifact(currentStep(detail));
  return {
    key: `${detail.mission_id}:${detail.current_step}:${filename}`,
    missionId: detail.mission_id,
    filename,
    content: filename ? detail.artifacts[filename] : undefined,
  };
}

/** The artifact to show: the chosen one while it exists, else raw-input.md, else the first. */
export function shownArtifact(detail, selected) {
  const names = Object.keys(detail.artifacts || {});
  if (selected && names.includes(selected)) return selected;
  return names.includes("raw-input.md") ? "raw-input.md" : names[0] || null;
}
