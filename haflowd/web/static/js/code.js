// A code mission's page section: project, branch and base, commits, the
// diff, and at the code review the commands and delivery (docs/contract/API-code.md).

import { api, download } from "./api.js";
import { $, h, replaceKeepFocus, sameSignature } from "./dom.js";
import { diffView } from "./diff.js";
import { timeEl } from "./format.js";
import { currentStep } from "./model.js";
import { state } from "./state.js";

const EXEC_POLL_MS = 1000;

// What this section knows about the open mission; forgotten when it changes.
let view = null;

function fresh(missionId) {
  return {
    missionId, project: undefined, commits: null, commitsKey: null, diff: null, diffKey: null,
    diffError: null, diffOpen: false, exec: null, execError: null, execBusy: false,
    delivered: null, deliverError: null, deliverBusy: false, patchError: null,
  };
}

function path(suffix) {
  return `/api/missions/${encodeURIComponent(view.missionId)}${suffix}`;
}

export const isCodeMission = (detail) => Boolean(detail && detail.project_id);

/** The code section of the mission page (a no-op for plain missions). */
export function renderCode(detail) {
  const el = $("mv-code");
  if (!el) return;
  if (!isCodeMission(detail)) {
    el.hidden = true;
    return;
  }
  el.hidden = false;
  // A new mission, or the page was laid out again (another mission was shown in between).
  if (!view || view.missionId !== detail.mission_id || !el.querySelector("#code-info")) {
    view = fresh(detail.mission_id);
    el.replaceChildren(
      h("h2", { class: "card-title", id: "code-title" }, "Code"),
      h("div", { id: "code-info", class: "code-info" }),
      h("div", { id: "code-review" }),
      h("div", { id: "code-deliver" }),
      h("section", { id: "code-commits", "aria-label": "Commits" }),
      h("section", { id: "code-changes", "aria-label": "Changes" }));
    loadProject(detail);
  }
  const atReview = detail.status === "waiting_code_review";
  // Commits and the diff follow the mission's runs.
  const key = JSON.stringify((detail.runs || []).map((r) => [r.run_id, r.commit || null, Boolean(r.finished_at)]));
  if (view.commitsKey !== key) {
    view.commitsKey = key;
    loadCommits(detail);
    if (view.diffOpen || atReview || detail.status === "completed") loadDiff();
  }
  renderInfo(detail);
  renderReview(detail, atReview);
  renderDeliver(detail, atReview || detail.status === "completed");
  renderCommits();
  renderChanges();
}

function rerender() {
  if (state.detail && view && state.detail.mission_id === view.missionId) renderCode(state.detail);
}

async function loadProject(detail) {
  try {
    view.project = await api("GET", `/api/projects/${encodeURIComponent(detail.project_id)}`);
  } catch {
    view.project = null;
  }
  rerender();
}

async function loadCommits() {
  const mine = view;
  try {
    const commits = await api("GET", path("/commits"));
    if (view === mine) view.commits = commits;
  } catch (err) {
    if (view === mine) view.commits = { error: err.message };
  }
  rerender();
}

async function loadDiff() {
  const mine = view;
  mine.diffOpen = true;
  try {
    const answer = await api("GET", path("/git-diff"));
    if (view !== mine) return;
    view.diff = answer;
    view.diffError = null;
  } catch (err) {
    if (view === mine) view.diffError = err.message;
  }
  rerender();
}

const short = (sha) => (sha ? sha.slice(0, 8) : "");

function renderInfo(detail) {
  const el = $("code-info");
  const project = view.project;
  if (sameSignature(el, [project, detail.branch, detail.base_commit, detail.delivered])) return;
  replaceKeepFocus(el, h("dl", { class: "facts" },
    h("dt", {}, "Project"),
    h("dd", { id: "code-project" }, project ? project.name : project === null ? detail.project_id : "…",
      project ? h("span", { class: "muted mono" }, ` ${project.path}`) : null),
    h("dt", {}, "Branch"), h("dd", { class: "mono", id: "code-branch" }, detail.branch || "—"),
    h("dt", {}, "Base"), h("dd", { class: "mono", id: "code-base", title: detail.base_commit || "" }, short(detail.base_commit) || "—"),
    detail.delivered ? [h("dt", {}, "Delivered"),
      h("dd", { id: "code-delivered" }, h("span", { class: "mono" }, detail.delivered.branch), " at ",
        h("span", { class: "mono" }, short(detail.delivered.commit)), " ", timeEl(detail.delivered.delivered_at))] : null));
}

function renderCommits() {
  const el = $("code-commits");
  const commits = view.commits;
  if (sameSignature(el, [commits])) return;
  const title = h("h3", { class: "section-title" }, "Commits");
  if (commits === null) return replaceKeepFocus(el, title, h("p", { class: "muted" }, "Loading…"));
  if (commits.error) return replaceKeepFocus(el, title, h("p", { class: "field-error" }, commits.error));
  if (!commits.length) return replaceKeepFocus(el, title, h("p", { class: "muted" }, "No commits yet: the agents have not changed any file."));
  const steps = new Map(((state.detail && state.detail.workflow && state.detail.workflow.steps) || []).map((s) => [s.step_id, s.name]));
  replaceKeepFocus(el, title, h("ul", { class: "commits" }, commits.map((c) => h("li", { class: "commit" },
    h("span", { class: "mono commit-sha", title: c.sha }, short(c.sha)),
    h("span", { class: "commit-message" }, (c.message || "").split("\n")[0]),
    c.step_id ? h("span", { class: "chip" }, steps.get(c.step_id) || c.step_id) : null,
    c.run_id ? h("span", { class: "muted mono" }, c.run_id) : null,
    h("span", { class: "diff-counts" },
      h("span", { class: "diff-plus" }, `+${c.insertions ?? 0}`), " ",
      h("span", { class: "diff-minus" }, `−${c.deletions ?? 0}`),
      h("span", { class: "muted" }, ` ${c.files ?? 0} file${c.files === 1 ? "" : "s"}`))))));
}

function renderChanges() {
  const el = $("code-changes");
  const key = [view.diffOpen, view.diff ? view.diff.diff.length : null, view.diff && view.diff.diff, view.diffError];
  if (sameSignature(el, key)) return;
  const head = h("div", { class: "section-head" },
    h("h3", { class: "section-title" }, "Changes"),
    h("button", { class: "button button-small", type: "button", id: "code-diff-load", "data-focus-key": "diff-load",
      onClick: () => loadDiff() }, view.diffOpen ? "Refresh diff" : "Show diff"));
  if (!view.diffOpen) return replaceKeepFocus(el, head);
  if (view.diffError) return replaceKeepFocus(el, head, h("p", { class: "field-error" }, view.diffError));
  if (!view.diff) return replaceKeepFocus(el, head, h("p", { class: "muted" }, "Loading the diff…"));
  replaceKeepFocus(el, head, diffView(view.missionId, view.diff));
}

// -- the code review: commands

function renderReview(detail, atReview) {
  const el = $("code-review");
  const step = currentStep(detail);
  const quick = atReview && step && Array.isArray(step.quickCommands) ? step.quickCommands : [];
  const test = view.project && view.project.test_command;
  const commands = [...quick, ...(atReview && test ? [test] : [])];
  if (!atReview) {
    if (el.childElementCount) el.replaceChildren();
    el.dataset.sig = "";
    return;
  }
  if (!sameSignature(el, [commands])) {
    const box = h("input", { type: "text", id: "command-input", class: "mono", placeholder: "e.g. make test",
      "aria-label": "Command", autocomplete: "off", spellcheck: "false" });
    replaceKeepFocus(el, h("section", { class: "code-commands", "aria-labelledby": "commands-title" },
      h("h3", { class: "section-title", id: "commands-title" }, "Run a command"),
      h("p", { class: "muted" }, "Commands run in a sandbox on a copy of the work tree, without network; they change nothing."),
      h("div", { class: "command-buttons" }, commands.map((c) =>
        h("button", { class: "button button-small mono command-button", type: "button", onClick: () => runCommand(c) }, c))),
      h("form", { class: "command-form", onSubmit: (e) => { e.preventDefault(); runCommand(box.value); } },
        box,
        h("button", { class: "button", type: "submit", id: "command-run" }, "Run")),
      h("div", { id: "command-result" })));
  }
  renderExec();
}

function renderExec() {
  const el = $("command-result");
  if (!el) return;
  const busy = view.execBusy || Boolean(view.exec && view.exec.status === "running");
  for (const b of document.querySelectorAll(".command-button, #command-run")) b.disabled = busy;
  const ex = view.exec;
  if (sameSignature(el, [ex, view.execError])) return;
  const scroll = el.querySelector("pre");
  const stick = !scroll || scroll.scrollTop + scroll.clientHeight >= scroll.scrollHeight - 4;
  replaceKeepFocus(el,
    view.execError ? h("p", { class: "field-error", role: "alert", id: "command-error" }, view.execError) : null,
    ex ? h("div", { class: "execution" },
      h("div", { class: "execution-head" },
        h("span", { class: "mono" }, `$ ${ex.command}`),
        h("span", { class: `run-exit ${ex.status === "running" ? "run-live" : ex.exitCode === 0 ? "run-ok" : "run-bad"}`, id: "command-status" },
          ex.status === "running" ? "running" : ex.exitCode !== undefined ? `exit ${ex.exitCode}` : ex.status)),
      h("pre", { class: "log", id: "command-output", tabindex: "0" }, ex.output || (ex.status === "running" ? "…" : "(no output)"))) : null);
  const pre = el.querySelector("pre");
  if (pre && stick) pre.scrollTop = pre.scrollHeight;
}

async function runCommand(command) {
  if (!command || !command.trim()) {
    view.execError = "Type a command first.";
    return renderExec();
  }
  if (view.execBusy || (view.exec && view.exec.status === "running")) return;
  const mine = view;
  view.execBusy = true;
  view.execError = null;
  renderExec();
  try {
    const { executionId } = await api("POST", path("/run-command"), { command: command.trim() });
    view.exec = { command: command.trim(), status: "running", output: "" };
    renderExec();
    for (;;) {
      if (view !== mine) return;
      const ex = await api("GET", path(`/execution/${encodeURIComponent(executionId)}`));
      if (view !== mine) return;
      view.exec = ex;
      renderExec();
      if (ex.status !== "running") break;
      await new Promise((resolve) => setTimeout(resolve, EXEC_POLL_MS));
    }
  } catch (err) {
    if (view === mine) view.execError = err.status === 409 ? `Not now: ${err.message}` : `The command failed to run: ${err.message}`;
  } finally {
    if (view === mine) {
      view.execBusy = false;
      renderExec();
    }
  }
}

// -- delivery and the patch

function renderDeliver(detail, allowed) {
  const el = $("code-deliver");
  const delivered = view.delivered || detail.delivered || null;
  if (sameSignature(el, [allowed, delivered, view.deliverError, view.deliverBusy, view.patchError, detail.branch])) return;
  if (!allowed) return replaceKeepFocus(el);
  const name = h("input", { type: "text", id: "deliver-branch", class: "mono", placeholder: detail.branch || "",
    "aria-label": "Branch name (optional)", autocomplete: "off", spellcheck: "false", "data-focus-key": "deliver-branch" });
  const current = $("deliver-branch");
  if (current) name.value = current.value;
  replaceKeepFocus(el, h("section", { class: "code-deliver", "aria-labelledby": "deliver-title" },
    h("h3", { class: "section-title", id: "deliver-title" }, "Deliver"),
    h("p", { class: "muted" }, "Creates the branch in your repository at the mission's last commit; your checkout is not touched."),
    h("form", { class: "command-form", onSubmit: (e) => { e.preventDefault(); deliver(name.value); } },
      h("label", { class: "field field-grow" }, h("span", { class: "field-label" }, "Branch name (optional)"), name),
      h("button", { class: "button button-primary", type: "submit", id: "deliver-button", disabled: view.deliverBusy,
        "data-focus-key": "deliver" }, view.deliverBusy ? "Delivering…" : "Deliver branch"),
      h("button", { class: "button", type: "button", id: "patch-download", "data-focus-key": "patch",
        onClick: downloadPatch }, "Download patch")),
    view.deliverError ? h("p", { class: "field-error", role: "alert", id: "deliver-error" }, view.deliverError) : null,
    view.patchError ? h("p", { class: "field-error", role: "alert" }, view.patchError) : null,
    delivered ? h("p", { class: "deliver-result", id: "deliver-result", role: "status" },
      "Delivered ", h("span", { class: "mono" }, delivered.branch), " at ",
      h("span", { class: "mono", title: delivered.commit }, short(delivered.commit)), ".") : null));
}

async function deliver(branch) {
  const mine = view;
  view.deliverBusy = true;
  view.deliverError = null;
  rerender();
  try {
    const body = branch && branch.trim() ? { branch: branch.trim() } : {};
    const done = await api("POST", path("/deliver"), body);
    if (view === mine) view.delivered = done;
  } catch (err) {
    if (view === mine) view.deliverError = `Delivery failed: ${err.message}`;
  } finally {
    mine.deliverBusy = false;
    rerender();
  }
}

async function downloadPatch() {
  view.patchError = null;
  try {
    await download(path("/patch"), `${view.missionId}.patch`);
  } catch (err) {
    view.patchError = `Could not download the patch: ${err.message}`;
  }
  rerender();
}

// -- one run's diff (the timeline's "Show changes" of a codegen run)

const runDiffs = new Map(); // `${mission}/${run}` -> element

/** The element showing one run's diff, built once and kept across re-renders. */
export function runDiffElement(missionId, runId) {
  const key = `${missionId}/${runId}`;
  if (runDiffs.has(key)) return runDiffs.get(key);
  const el = h("div", { class: "run-diff", "data-run-diff": runId }, h("p", { class: "muted" }, "Loading the diff…"));
  runDiffs.set(key, el);
  const q = `?from=${encodeURIComponent(runId)}&to=${encodeURIComponent(runId)}`;
  api("GET", `/api/missions/${encodeURIComponent(missionId)}/git-diff${q}`)
    .then((answer) => el.replaceChildren(diffView(missionId, answer, { id: `diff-${runId}`, perFile: false })))
    .catch((err) => {
      runDiffs.delete(key);
      el.replaceChildren(h("p", { class: "field-error" }, `Could not load the diff: ${err.message}`));
    });
  return el;
}

export function forgetRunDiff(missionId, runId) {
  runDiffs.delete(`${missionId}/${runId}`);
}
