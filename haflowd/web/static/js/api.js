// Talking to haflowd: fetch on this origin, the envelope, the access token.

import { $ } from "./dom.js";

const TOKEN_KEY = "haflow.token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let tokenPrompt = null;

/** One request, asking for the token (and retrying) as long as the daemon answers 401. */
async function send(method, path, body) {
  for (;;) {
    const headers = { Accept: "application/json" };
    const token = localStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const init = { method, headers, cache: "no-store", credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch {
      throw new ApiError(0, "Cannot reach haflowd. Is the daemon still running?");
    }
    if (res.status === 401) {
      await askForToken(Boolean(token));
      continue;
    }
    return res;
  }
}

async function readJson(res) {
  try {
    return await res.json();
  } catch {
    return null;
  }
}

/** Call the daemon; resolves to the envelope's data, throws ApiError otherwise. */
export async function api(method, path, body) {
  const res = await send(method, path, body);
  const payload = await readJson(res);
  if (!payload || typeof payload !== "object" || !("success" in payload)) {
    throw new ApiError(res.status, `Unexpected answer from haflowd (HTTP ${res.status}).`);
  }
  if (!payload.success) {
    throw new ApiError(res.status, payload.error || `Request failed (HTTP ${res.status}).`);
  }
  return payload.data;
}

/** GET a JSON document that is not wrapped in the envelope (the OpenAPI document). */
export async function apiDocument(path) {
  const res = await send("GET", path);
  const payload = await readJson(res);
  if (!res.ok || !payload || typeof payload !== "object") {
    const message = payload && payload.error ? payload.error : `Unexpected answer from haflowd (HTTP ${res.status}).`;
    throw new ApiError(res.status, message);
  }
  return payload;
}

/** Ask for the access token once, however many requests are waiting for it. */
function askForToken(rejected) {
  if (tokenPrompt) return tokenPrompt;
  tokenPrompt = new Promise((resolve) => {
    const dialog = $("token-dialog");
    const input = $("token-input");
    $("token-error").hidden = !rejected;
    input.value = "";
    const onCancel = (event) => event.preventDefault();
    const onSubmit = (event) => {
      const value = input.value.trim();
      if (!value) {
        event.preventDefault();
        input.focus();
        return;
      }
      localStorage.setItem(TOKEN_KEY, value);
      dialog.removeEventListener("cancel", onCancel);
      $("token-form").removeEventListener("submit", onSubmit);
      tokenPrompt = null;
      resolve();
    };
    dialog.addEventListener("cancel", onCancel);
    $("token-form").addEventListener("submit", onSubmit);
    if (!dialog.open) dialog.showModal();
    input.focus();
  });
  return tokenPrompt;
}

/** GET a file that is not JSON (the mission's patch) with the same auth, and save it as a download. */
export async function download(path, filename) {
  const res = await send("GET", path);
  if (!res.ok) {
    const payload = await readJson(res);
    throw new ApiError(res.status, (payload && payload.error) || `Download failed (HTTP ${res.status}).`);
  }
  const url = URL.createObjectURL(await res.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
