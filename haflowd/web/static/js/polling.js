// Every 2 s the list and the open mission, every 30 s the daemon's health;
// both paused while the page is hidden.

import { ApiError, api } from "./api.js";
import { $ } from "./dom.js";
import { refreshRelativeTimes } from "./format.js";
import { refreshList } from "./list.js";
import { refreshDetail } from "./mission.js";
import { setHealth, state } from "./state.js";

export const POLL_MS = 2000;
const HEALTH_MS = 30000;

let polling = false;

export async function poll() {
  if (polling) return;
  polling = true;
  try {
    const work = [refreshList()];
    if (state.route.name === "mission") work.push(refreshDetail());
    await Promise.all(work);
    setConnectionError(null);
  } catch (err) {
    if (err instanceof ApiError && err.status === 0) setConnectionError(err.message);
  } finally {
    polling = false;
    refreshRelativeTimes();
  }
}

export function setConnectionError(message) {
  const banner = $("connection-banner");
  banner.hidden = !message;
  banner.textContent = message ? `${message} Retrying every few seconds…` : "";
}

export async function checkHealth() {
  let health;
  try {
    health = await api("GET", "/api/health");
  } catch (err) {
    health = err instanceof ApiError && err.status === 404 ? null : undefined;
  }
  if (health === undefined) return;
  setHealth(health);
  renderHealth(health);
}

function renderHealth(health) {
  const banner = $("health-banner");
  const problems = [];
  if (health && health.docker === false) {
    problems.push("Docker is not reachable: agent steps cannot start until it is.");
  }
  if (health && health.missions_dir_writable === false) {
    problems.push("The missions folder is not writable: new missions and edits will fail.");
  }
  banner.hidden = problems.length === 0;
  banner.textContent = problems.join(" ");
  $("topbar-status").textContent = health && health.version ? `haflowd ${health.version}` : "";
}

export function startPolling() {
  setInterval(() => {
    if (document.visibilityState === "visible") poll();
  }, POLL_MS);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") {
      poll();
      checkHealth();
    }
  });
  setInterval(() => {
    if (document.visibilityState === "visible") checkHealth();
  }, HEALTH_MS);
}
