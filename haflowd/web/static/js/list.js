// The mission list in the sidebar, and the home page that sums it up.

import { api } from "./api.js";
import { $, h, replaceKeepFocus } from "./dom.js";
import { isRunning, isWaiting } from "./facts.js";
import { costText, statusBadge, timeEl } from "./format.js";
import { setMissions, state } from "./state.js";

export async function refreshList() {
  setMissions(await api("GET", "/api/missions"));
  renderList(state.missions, state.route);
  if (state.route.name === "home") renderHome(state.missions);
}

let listSignature = "";

export function renderList(missions, route) {
  const container = $("mission-list");
  const waiting = (missions || []).filter((m) => isWaiting(m.status));
  document.title = waiting.length ? `(${waiting.length}) haflow` : "haflow";
  document.body.dataset.missions = missions && missions.length ? "some" : "none";
  $("mission-count").textContent = missions ? String(missions.length) : "";
  const activeId = route.name === "mission" ? route.id : null;
  const signature = JSON.stringify([missions, activeId]);
  if (signature === listSignature) return;
  listSignature = signature;
  if (missions === null) return;
  if (missions.length === 0) {
    replaceKeepFocus(container, h("p", { class: "muted sidebar-empty" },
      "No missions yet. Use ", h("strong", {}, "New mission"), " to start one."));
    return;
  }
  const others = missions.filter((m) => !isWaiting(m.status));
  const groups = [];
  if (waiting.length) groups.push(["Waiting for you", waiting, "group-waiting"]);
  if (others.length) groups.push([waiting.length ? "Other missions" : "All missions", others, ""]);
  replaceKeepFocus(container, groups.map(([label, items, cls]) =>
    h("section", { class: `mission-group ${cls}`, "aria-label": label },
      h("h3", { class: "group-title" }, label),
      h("ul", { class: "missions" }, items.map((m) => missionItem(m, m.mission_id === activeId))))));
}

function missionItem(m, active) {
  return h("li", {},
    h("a", {
      class: `mission-item${active ? " active" : ""}${isWaiting(m.status) ? " waiting" : ""}`,
      href: `#/m/${m.mission_id}`,
      "aria-current": active ? "page" : null,
      "data-focus-key": `mission-${m.mission_id}`,
    },
    h("span", { class: "mission-item-top" },
      h("span", { class: "mission-title" }, m.title),
      statusBadge(m.status)),
    h("span", { class: "mission-item-meta" },
      h("span", { class: "chip" }, m.type),
      h("span", { class: "mission-step" }, m.current_step_name || ""),
      h("span", { class: "dot", "aria-hidden": "true" }, "·"),
      timeEl(m.updated_at),
      m.cost_usd !== undefined ? h("span", { class: "mission-cost", title: "Cost so far" }, costText(m.cost_usd)) : null)));
}

/** The home page: a first-mission guide, or how many missions wait. */
export function renderHome(missions) {
  const main = $("main");
  const signature = `home:${missions === null ? "?" : missions.length}`;
  if (main.dataset.view === signature) return;
  main.dataset.view = signature;
  main.replaceChildren(homeView(missions));
}

function homeView(missions) {
  if (missions === null) return h("div", { class: "empty" }, h("p", { class: "muted" }, "Loading…"));
  if (missions.length === 0) {
    return h("div", { class: "empty" },
      h("div", { class: "empty-mark", "aria-hidden": "true" }, "h"),
      h("h1", {}, "Start your first mission"),
      h("p", {}, "A mission takes a rough request (a feature idea, a bug report, a fix) through a workflow: " +
        "agents clean it up, research it, plan it and implement it, each in its own container, and " +
        "the mission stops at every review gate so you can read, edit and approve what they wrote."),
      h("ol", { class: "empty-steps" },
        h("li", {}, "Press ", h("strong", {}, "New mission"), "."),
        h("li", {}, "Give it a title, pick its type and paste the raw input."),
        h("li", {}, "Watch the agents run; review and approve each artifact when asked.")),
      h("a", { class: "button button-primary", href: "#/new" }, "New mission"));
  }
  const waiting = missions.filter((m) => isWaiting(m.status)).length;
  const running = missions.filter((m) => isRunning(m.status)).length;
  return h("div", { class: "empty" },
    h("h1", {}, waiting ? `${waiting} mission${waiting > 1 ? "s" : ""} waiting for you` : "Pick a mission"),
    h("p", { class: "muted" },
      `${missions.length} mission${missions.length > 1 ? "s" : ""}, ${running} running. ` +
      "Choose one from the list, or start a new one."),
    h("a", { class: "button button-primary", href: "#/new" }, "New mission"));
}
