// haflow web UI, the entry module: plain ES modules, no build step, talks
// only to /api on this origin.
//
// Safety rule of every module: text that comes from the daemon (titles, logs,
// artifacts, errors) is only ever put into the page with textContent (through
// dom.h()). The single exception is the HTML the daemon renders for artifacts
// (GET .../artifacts/:filename/html), sanitised server-side (artifacts.js).

import { loadFacts } from "./facts.js";
import { POLL_MS, checkHealth, poll, setConnectionError, startPolling } from "./polling.js";
import { applyRoute, startRouter } from "./router.js";
import { setFacts } from "./state.js";

/** The daemon's facts first (statuses, types, default workflow), retried until it answers. */
async function loadFactsUntilAnswered() {
  for (;;) {
    try {
      setFacts(await loadFacts());
      setConnectionError(null);
      return;
    } catch (err) {
      setConnectionError(err.message);
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }
}

checkHealth();
await loadFactsUntilAnswered();
startRouter();
applyRoute();
poll();
startPolling();
