// The mission page's redraw and reload, for the modules it is drawn from.
// The gate, the logs, the timeline and the actions ask for them here instead
// of importing mission.js (which imports them): mission.js registers itself
// when it loads, so imports only point down.

let redraw = () => {};
let reload = async () => {};

/** Called once by mission.js: how the page is drawn from the state, and how its mission is loaded again. */
export function setMissionView({ render, refresh }) {
  redraw = render;
  reload = refresh;
}

/** Draw the mission page again from the state (nothing is fetched). */
export function redrawMission() {
  redraw();
}

/** Load the mission of the route again, then draw it. */
export function reloadMission() {
  return reload();
}
