// The artifact browser, and artifacts rendered by the daemon.

import { api } from "./api.js";
import { $, h, replaceKeepFocus, sameSignature } from "./dom.js";
import { cacheRendered, selectArtifact, setArtifactMode, state } from "./state.js";

/** The daemon's sanitised HTML for an artifact's content (cached), or null. */
async function renderedHtml(missionId, filename, content) {
  const cacheKey = `${missionId}/${filename}`;
  const cached = state.renderCache.get(cacheKey);
  if (cached && cached.content === content) return cached.html;
  let html = null;
  try {
    const data = await api("GET",
      `/api/missions/${encodeURIComponent(missionId)}/artifacts/${encodeURIComponent(filename)}/html`);
    html = data && typeof data.html === "string" ? data.html : null;
  } catch {
    html = null;
  }
  if (html !== null) cacheRendered(cacheKey, content, html);
  return html;
}

/** Show an artifact rendered in `container` (the latest call wins). */
export async function renderArtifactInto(container, missionId, filename, content) {
  const pending = `${missionId}/${filename}:${content.length}`;
  container.dataset.pending = pending;
  const html = await renderedHtml(missionId, filename, content);
  if (container.dataset.pending !== pending) return;
  if (html === null) {
    // No server rendering available: show the text, escaped by textContent.
    container.replaceChildren(h("pre", { class: "artifact-text" }, content));
  } else {
    container.innerHTML = html; // sanitised by haflowd (render.py); the only innerHTML here
  }
  container.classList.toggle("is-empty", !content.trim());
}

export function renderArtifacts(detail, selected, mode) {
  const el = $("mv-artifacts");
  const names = Object.keys(detail.artifacts || {});
  const sel = selected;
  const content = sel ? detail.artifacts[sel] : "";
  if (sameSignature(el, [names, sel, content, mode])) return;
  if (!names.length) {
    replaceKeepFocus(el, h("h2", { class: "card-title", id: "artifacts-title" }, "Artifacts"),
      h("p", { class: "muted" }, "No artifacts yet."));
    return;
  }
  const body = h("div", { class: "rendered artifact-body", id: "artifact-body" });
  const rerender = () => renderArtifacts(state.detail, state.selectedArtifact, state.artifactMode);
  replaceKeepFocus(el,
    h("div", { class: "card-head" },
      h("h2", { class: "card-title", id: "artifacts-title" }, "Artifacts"),
      h("div", { class: "segmented", role: "group", "aria-label": "Display" },
        ["rendered", "source"].map((m) => h("button", {
          class: "seg", type: "button", "aria-pressed": String(mode === m),
          "data-focus-key": `mode-${m}`,
          onClick: () => { setArtifactMode(m); rerender(); },
        }, m === "rendered" ? "Rendered" : "Source")))),
    h("div", { class: "artifact-list", role: "group", "aria-label": "Artifact files" },
      names.map((name) => h("button", {
        class: "artifact-chip", type: "button", "aria-pressed": String(name === sel),
        "data-focus-key": `artifact-${name}`,
        onClick: () => { selectArtifact(name); rerender(); },
      }, name))),
    body);
  if (mode === "source") body.replaceChildren(h("pre", { class: "artifact-text" }, content));
  else renderArtifactInto(body, detail.mission_id, sel, content);
}
