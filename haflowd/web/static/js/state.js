// The one store. Modules read `state`; they change it only through the
// named functions below. Render functions never change it.

/** The most characters of a log kept (in the store and in the page). */
export const LOG_KEEP_CHARS = 1024 * 1024;

let generation = 0;

/**
 * A log as shown: `text` holds at most LOG_KEEP_CHARS; `total` counts every
 * character ever appended and `gen` changes whenever the text is replaced,
 * so the page can append only what is new. `offset` is the next byte to ask
 * for (null: not loaded yet).
 */
function newLog(runId, follow = true) {
  generation += 1;
  return { runId, text: "", total: 0, gen: generation, offset: null, follow, error: null, done: false };
}

export const state = {
  facts: { statuses: [], running: new Set(), waiting: new Set(), types: [], defaultWorkflow: null },
  missions: null,
  workflows: null,
  workflowsError: null,
  route: { name: "home" },
  detail: null,
  detailError: null,
  health: undefined,
  editor: null, // { key, missionId, filename, saved, dirty, busy, message, error, tab }
  selectedArtifact: null, // filename shown in the artifact browser
  artifactMode: "rendered",
  openLogs: new Map(), // run_id -> log (see newLog), plus error
  openRunDiffs: new Set(), // run_ids whose diff the timeline shows
  liveLog: newLog(null),
  renderCache: new Map(), // `${mission}/${file}` -> { content, html }
  actionBusy: false,
  actionError: null,
};

function appendCapped(log, more) {
  let text = log.text + more;
  if (text.length > LOG_KEEP_CHARS) text = text.slice(text.length - LOG_KEEP_CHARS);
  return { ...log, text, total: log.total + more.length };
}

export function setFacts(facts) {
  state.facts = facts;
}

export function setMissions(missions) {
  state.missions = Array.isArray(missions) ? missions : [];
}

/** Take a new route; leaving a mission forgets everything about it. */
export function setRoute(route) {
  const changedMission = route.name !== "mission" || state.route.id !== route.id;
  state.route = route;
  if (!changedMission) return;
  state.detail = null;
  state.detailError = null;
  state.editor = null;
  state.selectedArtifact = null;
  state.artifactMode = "rendered";
  state.openLogs.clear();
  state.openRunDiffs.clear();
  state.liveLog = newLog(null);
  state.actionError = null;
}

export function setWorkflows(workflows, error = null) {
  state.workflows = error ? state.workflows : workflows;
  state.workflowsError = error;
}

export function setHealth(health) {
  state.health = health;
}

export function setDetail(detail) {
  state.detail = detail;
  state.detailError = null;
}

export function setDetailError(message) {
  state.detail = null;
  state.detailError = message;
}

export function setArtifactContent(missionId, filename, content) {
  if (state.detail && state.detail.mission_id === missionId) state.detail.artifacts[filename] = content;
}

export function setActionBusy(busy) {
  state.actionBusy = busy;
}

export function setActionError(message) {
  state.actionError = message;
}

export function selectArtifact(filename) {
  state.selectedArtifact = filename;
}

export function setArtifactMode(mode) {
  state.artifactMode = mode;
}

export function cacheRendered(key, content, html) {
  state.renderCache.set(key, { content, html });
}

// -- the review gate's editor

/** Open the editor for a gate (a new key), or follow the artifact when nothing local is unsaved. */
export function syncEditor(gate) {
  if (!gate) {
    state.editor = null;
    return;
  }
  const { key, missionId, filename, content } = gate;
  const ed = state.editor;
  if (!ed || ed.key !== key) {
    state.editor = {
      key, missionId, filename, saved: content ?? "", dirty: false,
      busy: false, message: null, error: null, tab: "preview",
    };
  } else if (!ed.dirty && !ed.busy && content !== undefined && content !== ed.saved) {
    ed.saved = content; // changed on disk by someone else; nothing local to lose
  }
}

export function editorInput(value) {
  const ed = state.editor;
  if (!ed) return;
  ed.dirty = value !== ed.saved;
  ed.message = null;
}

export function setEditorTab(tab) {
  if (state.editor) state.editor.tab = tab;
}

export function editorSaving() {
  state.editor.busy = true;
  state.editor.error = null;
}

export function editorSaved(ed, value, current, message) {
  ed.saved = value;
  ed.dirty = current !== value;
  ed.message = message;
}

export function editorFailed(ed, message) {
  ed.error = message;
}

export function editorIdle(ed) {
  ed.busy = false;
}

export function isDirty() {
  return Boolean(state.editor && state.editor.dirty);
}

export function discardEdits() {
  if (state.editor) state.editor.dirty = false;
}

// -- logs

export function openRunLog(runId) {
  state.openLogs.set(runId, newLog(runId));
}

export function toggleRunDiff(runId) {
  if (state.openRunDiffs.has(runId)) state.openRunDiffs.delete(runId);
  else state.openRunDiffs.add(runId);
}

export function closeRunLog(runId) {
  state.openLogs.delete(runId);
}

/** Put what was read of a log into the live log or an open run log. */
export function updateLog(target, runId, read) {
  const log = target === "live" ? state.liveLog : state.openLogs.get(runId);
  if (!log || log.runId !== runId) return;
  // Two reads from the same offset (a poll and an action) must not both append.
  if (!read.replace && read.from !== log.offset) return;
  let next = read.replace ? newLog(runId, log.follow) : log;
  if (read.text) next = appendCapped(next, read.text);
  next = { ...next, offset: read.offset ?? next.offset, error: null, done: Boolean(read.done) || log.done };
  if (target === "live") state.liveLog = next;
  else state.openLogs.set(runId, next);
}

export function setLogError(runId, message) {
  const log = state.openLogs.get(runId);
  if (log) state.openLogs.set(runId, { ...log, error: message });
}

/** The live log now follows another run (or the detail's tail when runId is null). */
export function followLiveRun(runId) {
  if (state.liveLog.runId !== runId) state.liveLog = newLog(runId);
}

export function setLiveFollow(follow) {
  state.liveLog = { ...state.liveLog, follow };
}
