// The review gate: read the artifact, edit it, save, approve.

import { confirmLeaveEdits, continueMission, requestChanges } from "./actions.js";
import { api } from "./api.js";
import { $, h } from "./dom.js";
import { renderArtifactInto, renderArtifacts } from "./artifacts.js";
import {
  editorFailed, editorIdle, editorInput, editorSaved, editorSaving, isDirty,
  setArtifactContent, setEditorTab, state,
} from "./state.js";

// What each preview shows, so a poll re-renders it only when the artifact changed.
const previewShows = new WeakMap();

export function renderGate(el, detail, step, ed) {
  const content = ed.filename ? detail.artifacts[ed.filename] : undefined;
  if (el.dataset.editor !== ed.key) {
    el.dataset.editor = ed.key;
    el.replaceChildren(gatePanel(step, ed, content));
  }
  const area = $("gate-editor");
  if (area && !ed.dirty && area.value !== ed.saved) area.value = ed.saved;
  updateGate(detail, ed, content);
}

function refreshGate() {
  if (state.detail && state.editor) updateGate(state.detail, state.editor, state.detail.artifacts[state.editor.filename]);
}

function gatePanel(step, ed, content) {
  const editor = h("textarea", { class: "editor", id: "gate-editor", spellcheck: "true",
    "aria-label": `Edit ${ed.filename}` });
  editor.value = content ?? "";
  editor.addEventListener("input", () => {
    editorInput(editor.value);
    refreshGate();
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
      setEditorTab(name);
      refreshGate();
      if (name === "edit") editor.focus();
    },
    onKeydown: (event) => {
      if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
        setEditorTab(state.editor.tab === "edit" ? "preview" : "edit");
        refreshGate();
        $(`gate-tab-${state.editor.tab}`).focus();
      }
    },
  }, label);
  const codeReview = step && step.type === "code-review";
  return h("div", { class: "card panel panel-gate" },
    h("div", { class: "panel-head" },
      h("div", {},
        h("p", { class: "eyebrow" }, codeReview ? "Code review" : "Your review"),
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
      editor) : null,
    changesBox(codeReview));
}

/** "Request changes": the feedback goes to the agent step before this gate, which runs again. */
function changesBox(codeReview) {
  const box = h("textarea", { id: "feedback-input", class: "feedback", rows: "3", spellcheck: "true",
    "aria-label": "Feedback for the agent",
    placeholder: codeReview ? "What should the agent change in the code?" : "What should the agent change?" });
  const error = h("p", { class: "field-error", id: "feedback-error", hidden: true });
  const send = async (event) => {
    event.preventDefault();
    const feedback = box.value.trim();
    error.hidden = Boolean(feedback);
    error.textContent = feedback ? "" : "Write what should change first.";
    if (!feedback) return box.focus();
    if (isDirty() && !(await confirmLeaveEdits())) return;
    await requestChanges(feedback);
  };
  return h("details", { class: "request-changes", id: "request-changes" },
    h("summary", {}, "Request changes"),
    h("form", { class: "feedback-form", onSubmit: send },
      h("p", { class: "muted" }, "The previous agent step runs again with your feedback; the mission then comes back to this review."),
      box, error,
      h("div", { class: "form-actions" },
        h("button", { class: "button", type: "submit", id: "feedback-send" }, "Send feedback & re-run"))));
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
  const preview = $("gate-preview");
  const shown = content ?? "";
  if (previewShows.get(preview) !== shown) {
    previewShows.set(preview, shown);
    renderArtifactInto(preview, detail.mission_id, ed.filename, shown);
  }
}

async function saveArtifact() {
  const ed = state.editor;
  if (!ed || !ed.dirty || ed.busy) return true;
  const value = $("gate-editor").value;
  editorSaving();
  refreshGate();
  try {
    await api("PUT", `/api/missions/${encodeURIComponent(ed.missionId)}/artifacts/${encodeURIComponent(ed.filename)}`,
      { content: value });
    editorSaved(ed, value, $("gate-editor").value, `Saved at ${new Date().toLocaleTimeString()}`);
    setArtifactContent(ed.missionId, ed.filename, value);
    return true;
  } catch (err) {
    editorFailed(ed, `Could not save ${ed.filename}: ${err.message}`);
    return false;
  } finally {
    editorIdle(ed);
    if (state.detail) {
      if (state.editor === ed) refreshGate();
      renderArtifacts(state.detail, state.selectedArtifact, state.artifactMode);
    }
  }
}

async function approveGate() {
  const ed = state.editor;
  if (ed && ed.dirty && !(await saveArtifact())) return;
  await continueMission("Approve");
}
