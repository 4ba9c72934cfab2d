// What the daemon says is true (statuses, mission types, the default
// workflow), read once from its OpenAPI document instead of re-typed here.

import { apiDocument } from "./api.js";
import { state } from "./state.js";

/** Read the facts from GET /api/openapi.json. */
export async function loadFacts() {
  const doc = await apiDocument("/api/openapi.json");
  const schemas = doc.components.schemas;
  const statuses = schemas.MissionStatus.enum;
  return {
    statuses,
    running: new Set(schemas.MissionStatus["x-running"] || []),
    // Statuses named waiting_* stop the mission for a human.
    waiting: new Set(statuses.filter((s) => s.startsWith("waiting_"))),
    types: schemas.MissionType.enum,
    defaultWorkflow: schemas.CreateMissionRequest.properties.workflowId.default ?? null,
  };
}

export const isRunning = (status) => state.facts.running.has(status);
export const isWaiting = (status) => state.facts.waiting.has(status);
