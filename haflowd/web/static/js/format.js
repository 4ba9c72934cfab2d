// How times, durations and statuses read in the page.

import { h } from "./dom.js";
import { isRunning } from "./facts.js";

// Wording only: which statuses exist comes from the daemon (facts.js).
const STATUS_LABELS = {
  draft: "Draft",
  ready: "Ready",
  waiting_human: "Needs review",
  waiting_code_review: "Code review",
  running_code_agent: "Running agent",
  running_root_llm: "Running LLM",
  failed: "Failed",
  completed: "Completed",
};

export function statusLabel(status) {
  return STATUS_LABELS[status] || status;
}

export function statusBadge(status) {
  return h("span", { class: `badge badge-${status}` },
    isRunning(status) ? h("span", { class: "pulse", "aria-hidden": "true" }) : null,
    statusLabel(status));
}

function parseTime(iso) {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : t;
}

export function relativeTime(iso) {
  const t = parseTime(iso);
  if (t === null) return "";
  const s = Math.round((Date.now() - t) / 1000);
  if (s < 10) return "just now";
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const hr = Math.floor(m / 60);
  if (hr < 24) return `${hr} h ago`;
  const d = Math.floor(hr / 24);
  if (d < 30) return `${d} d ago`;
  return new Date(t).toLocaleDateString();
}

export function absoluteTime(iso) {
  const t = parseTime(iso);
  return t === null ? "" : new Date(t).toLocaleString();
}

export function clockTime(iso) {
  const t = parseTime(iso);
  return t === null ? "" : new Date(t).toLocaleTimeString();
}

export function duration(fromIso, toIso) {
  const a = parseTime(fromIso);
  const b = toIso ? parseTime(toIso) : Date.now();
  if (a === null || b === null) return "";
  let s = Math.max(0, Math.round((b - a) / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  s %= 60;
  if (m < 60) return `${m} min ${s} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function timeEl(iso) {
  return h("time", { datetime: iso, title: absoluteTime(iso), "data-relative": iso }, relativeTime(iso));
}

export function refreshRelativeTimes() {
  for (const el of document.querySelectorAll("time[data-relative]")) {
    const text = relativeTime(el.dataset.relative);
    if (el.textContent !== text) el.textContent = text;
  }
}

function tokens(n) {
  if (n === undefined || n === null) return "?";
  return n >= 10000 ? `${(n / 1000).toFixed(1)}k` : String(n);
}

export function costText(usd) {
  if (usd === undefined || usd === null) return "";
  return usd < 0.01 && usd > 0 ? `$${usd.toFixed(4)}` : `$${usd.toFixed(2)}`;
}

/** Usage as one line: "1.2k in · 340 out · $0.02 · model". */
export function usageText(usage) {
  const parts = [`${tokens(usage.input_tokens)} in`, `${tokens(usage.output_tokens)} out`];
  if (usage.cached_input_tokens) parts.push(`${tokens(usage.cached_input_tokens)} cached`);
  if (usage.cost_usd !== undefined) parts.push(costText(usage.cost_usd));
  if (usage.model) parts.push(usage.model);
  return parts.join(" · ");
}
