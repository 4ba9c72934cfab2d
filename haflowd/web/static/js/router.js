// Hash routes (#/, #/new, #/m/<id>), guarded against losing unsaved edits.

import { confirmLeaveEdits } from "./actions.js";
import { $ } from "./dom.js";
import { createView, loadWorkflows } from "./create.js";
import { renderHome, renderList } from "./list.js";
import { refreshDetail, renderMission } from "./mission.js";
import { isDirty, setRoute, state } from "./state.js";

export function parseRoute(hash) {
  const mission = /^#\/m\/([A-Za-z0-9_-]+)$/.exec(hash);
  if (mission) return { name: "mission", id: mission[1] };
  if (hash === "#/new") return { name: "new" };
  return { name: "home" };
}

let currentHash = location.hash;

/** In-app navigation; asks first when the open editor holds unsaved edits. */
async function navigate(hash) {
  if (hash === currentHash) return;
  if (!(await confirmLeaveEdits())) return;
  location.hash = hash;
}

/** Listen to links, back/forward and page closing. */
export function startRouter() {
  window.addEventListener("beforeunload", (event) => {
    if (isDirty()) {
      event.preventDefault();
      event.returnValue = "";
    }
  });

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
}

export function applyRoute() {
  const route = parseRoute(location.hash);
  setRoute(route);
  document.body.classList.remove("view-home", "view-new", "view-mission");
  document.body.classList.add(`view-${route.name}`);
  renderList(state.missions, state.route);
  renderMain();
  if (route.name === "mission") refreshDetail().catch(() => {});
  if (route.name === "new") loadWorkflows();
  const main = $("main");
  if (route.name !== "home") main.focus({ preventScroll: true });
}

function renderMain() {
  const main = $("main");
  if (state.route.name === "new") {
    if (!main.querySelector("#create-form")) main.replaceChildren(createView(state.facts.types));
    return;
  }
  if (state.route.name === "mission") {
    renderMission();
    return;
  }
  renderHome(state.missions);
}
