// Run logs: read by byte offset so each poll moves only new bytes, and the
// running step's live log panel.

import { cancelRun } from "./actions.js";
import { api } from "./api.js";
import { $, h } from "./dom.js";
import { clockTime, duration } from "./format.js";
import { activeRun } from "./model.js";
import {
  LOG_KEEP_CHARS, followLiveRun, setLiveFollow, setLogError, state, updateLog,
} from "./state.js";

/** The most bytes one answer of GET .../log?offset=N carries. */
const CHUNK_BYTES = 256 * 1024;

function logPath(missionId, runId) {
  return `/api/missions/${encodeURIComponent(missionId)}/runs/${encodeURIComponent(runId)}/log`;
}

function readChunk(missionId, runId, offset) {
  return api("GET", `${logPath(missionId, runId)}?offset=${offset}`);
}

/** Text that starts inside the log: drop the partial first line. */
function fromLineStart(text) {
  const cut = text.indexOf("\n");
  return cut >= 0 && cut < text.length - 1 ? text.slice(cut + 1) : text;
}

/** The last CHUNK_BYTES of a log, as a replacement of what is shown. */
async function readTail(missionId, runId, size) {
  const start = Math.max(0, size - CHUNK_BYTES);
  const chunk = await readChunk(missionId, runId, start);
  const text = start > 0 ? fromLineStart(chunk.text) : chunk.text;
  return { replace: true, text, offset: chunk.next_offset };
}

/**
 * What is new in a log since byte `offset` (null: nothing read yet, so the
 * tail). Catching up reads at most LOG_KEEP_CHARS bytes per poll; further
 * behind than that, it jumps to the tail.
 */
export async function readNew(missionId, runId, offset) {
  if (offset === null) {
    const first = await readChunk(missionId, runId, 0);
    if (first.size <= CHUNK_BYTES) return { replace: true, text: first.text, offset: first.next_offset };
    return readTail(missionId, runId, first.size);
  }
  let text = "";
  let next = offset;
  while (text.length < LOG_KEEP_CHARS) {
    const chunk = await readChunk(missionId, runId, next);
    if (chunk.size < offset) return readTail(missionId, runId, chunk.size); // the log was replaced
    if (next === offset && chunk.size - offset > LOG_KEEP_CHARS) return readTail(missionId, runId, chunk.size);
    text += chunk.text;
    next = chunk.next_offset;
    if (!chunk.text || next >= chunk.size) break;
  }
  return { replace: false, from: offset, text, offset: next };
}

/** Bring the live log of the running step up to date. */
export async function refreshLiveLog(detail) {
  const run = activeRun(detail);
  if (!run) {
    followLiveRun(null);
    const tail = detail.current_log_tail || "";
    if (state.liveLog.text !== tail) updateLog("live", null, { replace: true, text: tail });
    return;
  }
  followLiveRun(run.run_id);
  try {
    updateLog("live", run.run_id, await readNew(detail.mission_id, run.run_id, state.liveLog.offset));
  } catch (err) {
    if (err.status === 0) throw err;
    // No offset reads here: show the tail the detail carries.
    const tail = detail.current_log_tail || "";
    if (state.liveLog.text !== tail) updateLog("live", run.run_id, { replace: true, text: tail });
  }
}

/** Read what is new in every open run log; a finished run is read once more, then left alone. */
export async function refreshOpenLogs(detail) {
  const finished = new Set((detail.runs || []).filter((r) => r.finished_at).map((r) => r.run_id));
  const loads = [];
  for (const [runId, log] of state.openLogs) {
    if (log.done) continue;
    loads.push(loadRunLog(detail.mission_id, runId, finished.has(runId)));
  }
  await Promise.all(loads);
}

export async function loadRunLog(missionId, runId, finished) {
  const log = state.openLogs.get(runId);
  if (!log) return;
  try {
    const read = await readNew(missionId, runId, log.offset);
    updateLog("open", runId, { ...read, done: finished });
  } catch (err) {
    if (err.status === 0) throw err;
    setLogError(runId, err.status === 404 ? "This run's log is not available." : err.message);
  }
}

/**
 * Show a log in a <pre>, appending only what is new since the last call and
 * dropping the oldest text beyond LOG_KEEP_CHARS. Answers whether it changed.
 */
export function patchLog(pre, log, placeholder) {
  const shown = Number(pre.dataset.total || -1);
  const gen = String(log.gen);
  const fresh = pre.dataset.gen !== gen || log.total < shown || log.total - shown > log.text.length;
  if (fresh || (shown === 0 && log.total > 0)) {
    pre.textContent = log.text || placeholder;
    pre.dataset.gen = gen;
    pre.dataset.total = String(log.total);
    pre.dataset.length = String(log.text.length);
    return true;
  }
  if (log.total === shown) return false;
  const added = log.text.slice(log.text.length - (log.total - shown));
  pre.append(document.createTextNode(added));
  let length = Number(pre.dataset.length) + added.length;
  while (length > LOG_KEEP_CHARS && pre.firstChild) {
    const first = pre.firstChild;
    const extra = length - LOG_KEEP_CHARS;
    if (first.length <= extra) {
      length -= first.length;
      first.remove();
    } else {
      first.deleteData(0, extra);
      length -= extra;
    }
  }
  pre.dataset.total = String(log.total);
  pre.dataset.length = String(length);
  return true;
}

// -- the live log panel of a running step

export function renderRunning(el, detail, step) {
  if (!el.firstChild) el.append(runningPanel());
  const run = activeRun(detail);
  $("live-title").textContent = step ? `${step.name} is running` : "Running";
  $("live-sub").textContent = [
    step && step.agent ? `Agent ${step.agent}` : null,
    run ? `started ${clockTime(run.started_at)} · ${duration(run.started_at)}` : null,
  ].filter(Boolean).join(" · ");
  $("cancel-run").disabled = state.actionBusy;
  const pre = $("live-log");
  if (patchLog(pre, state.liveLog, "Waiting for output…") && state.liveLog.follow) {
    pre.scrollTop = pre.scrollHeight;
  }
  updateFollowNote();
}

function runningPanel() {
  const pre = h("pre", { class: "log live-log", id: "live-log", tabindex: "0", "aria-label": "Live log" });
  pre.addEventListener("scroll", () => {
    const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
    if (state.liveLog.follow !== atBottom) {
      setLiveFollow(atBottom);
      updateFollowNote();
    }
  });
  return h("div", { class: "card panel panel-running" },
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
          setLiveFollow(true);
          pre.scrollTop = pre.scrollHeight;
          updateFollowNote();
        } }, "Jump to latest")));
}

function updateFollowNote() {
  const note = $("follow-note");
  const btn = $("follow-btn");
  if (!note) return;
  note.textContent = state.liveLog.follow ? "Following the log" : "Paused: scrolled up";
  btn.hidden = state.liveLog.follow;
}
