// What the mission's buttons do: start, retry, approve, request changes,
// cancel, mark completed, delete; and the question before unsaved edits are lost.

import { ApiError, api } from "./api.js";
import { confirmDialog } from "./dialog.js";
import { refreshList } from "./list.js";
import { redrawMission, reloadMission } from "./redraw.js";
import { discardEdits, isDirty, setActionBusy, setActionError, state } from "./state.js";

/** Ask before unsaved edits are lost; answers whether to go on. */
export async function confirmLeaveEdits() {
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

async function runAction(label, fn) {
  if (state.actionBusy) return;
  setActionBusy(true);
  setActionError(null);
  redrawMission();
  try {
    await fn();
  } catch (err) {
    setActionError(`${label} failed: ${err.message}`);
  } finally {
    setActionBusy(false);
    await reloadMission().catch(() => {});
    refreshList().catch(() => {});
    redrawMission();
  }
}

function missionPath(suffix) {
  return `/api/missions/${encodeURIComponent(state.detail.mission_id)}${suffix}`;
}

export async function markCompleted() {
  const ok = await confirmDialog({
    title: "Mark this mission completed?",
    message: "Remaining steps are skipped and the mission stops here. Its artifacts stay available.",
    confirmLabel: "Mark completed",
  });
  if (!ok) return;
  if (!(await confirmLeaveEdits())) return;
  await runAction("Mark completed", () => api("POST", missionPath("/mark-completed")));
}

export async function deleteMission() {
  const detail = state.detail;
  const ok = await confirmDialog({
    title: "Delete this mission?",
    message: `“${detail.title}” is removed with its artifacts, logs and work tree. A running step is stopped. ` +
      "A branch you delivered stays in your repository. This cannot be undone.",
    confirmLabel: "Delete mission",
    danger: true,
  });
  if (!ok) return;
  if (!(await confirmLeaveEdits())) return;
  setActionBusy(true);
  setActionError(null);
  try {
    await api("DELETE", missionPath(""));
  } catch (err) {
    setActionBusy(false);
    setActionError(`Delete failed: ${err.message}`);
    redrawMission();
    return;
  }
  setActionBusy(false);
  await refreshList().catch(() => {});
  location.hash = "#/";
}

/** Send the gate's feedback: the agent step before the gate runs again with it. */
export function requestChanges(feedback) {
  return runAction("Request changes", () => api("POST", missionPath("/request-changes"), { feedback }));
}

export function continueMission(label) {
  return runAction(label, () => api("POST", missionPath("/continue")));
}

export async function cancelRun() {
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
