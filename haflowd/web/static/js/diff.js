// Unified diffs: parse git's output into files, show the file list first and
// a file's hunks only when it is opened. Diff text enters the page only as
// text nodes (dom.h), so HTML in a diff stays inert.

import { api } from "./api.js";
import { appendChildren, h } from "./dom.js";

/** Split a `git diff` into files: { path, oldPath, status, added, removed, binary, symlink, lines }. */
export function parseDiff(text) {
  const files = [];
  let file = null;
  let inHunk = false;
  for (const line of (text || "").split("\n")) {
    if (line.startsWith("diff --git ")) {
      const m = /^diff --git a\/(.*) b\/(.*)$/.exec(line);
      file = { path: m ? m[2] : line.slice(11), oldPath: m ? m[1] : null, status: "M",
        added: 0, removed: 0, binary: false, symlink: false, lines: [line] };
      files.push(file);
      inHunk = false;
      continue;
    }
    if (!file) continue;
    file.lines.push(line);
    if (line.startsWith("@@")) { inHunk = true; continue; }
    if (inHunk) {
      if (line.startsWith("+")) file.added += 1;
      else if (line.startsWith("-")) file.removed += 1;
      continue;
    }
    if (line.startsWith("new file mode")) {
      file.status = "A";
      if (line.endsWith("120000")) file.symlink = true;
    } else if (line.startsWith("deleted file mode")) {
      file.status = "D";
      if (line.endsWith("120000")) file.symlink = true;
    } else if (line.startsWith("rename from ")) file.status = "R";
    else if (line.startsWith("new mode") || line.startsWith("old mode")) {
      if (line.endsWith("120000")) file.symlink = true;
      if (file.status === "M") file.status = "T";
    } else if (line.startsWith("index ") && / 120000$/.test(line)) file.symlink = true;
    else if (line.startsWith("Binary files ") || line === "GIT binary patch") file.binary = true;
  }
  for (const f of files) {
    while (f.lines.length && f.lines[f.lines.length - 1] === "") f.lines.pop();
  }
  return files;
}

function lineClass(line) {
  if (line.startsWith("@@")) return "dl dl-hunk";
  if (line.startsWith("+++") || line.startsWith("---") || line.startsWith("diff --git") ||
    line.startsWith("index ") || /^(new|deleted|old) (file )?mode|^rename |^similarity /.test(line)) return "dl dl-meta";
  if (line.startsWith("+")) return "dl dl-add";
  if (line.startsWith("-")) return "dl dl-del";
  if (line.startsWith("\\")) return "dl dl-note";
  return "dl";
}

/** One file's diff lines as a <pre>, each line a text-only span. */
export function diffBody(file) {
  if (file.binary) return h("p", { class: "muted diff-binary" }, "Binary file: its content is not shown.");
  const pre = h("pre", { class: "diff-text", tabindex: "0", "aria-label": `Diff of ${file.path}` });
  const frag = document.createDocumentFragment();
  for (const line of file.lines) {
    const span = document.createElement("span");
    span.className = lineClass(line);
    span.textContent = `${line}\n`;
    frag.append(span);
  }
  pre.append(frag);
  if (file.symlink) {
    return [h("p", { class: "muted diff-symlink" }, "Symbolic link: the lines are its target."), pre];
  }
  return pre;
}

/**
 * A diff view: `{diff, truncated}` from GET git-diff. The list of files comes
 * first; a file's hunks are built when it is opened. When the whole diff was
 * truncated, an opened file is read on its own from git-diff/:path.
 */
export function diffView(missionId, answer, { id = "diff-view", perFile = true } = {}) {
  const files = parseDiff(answer.diff);
  const added = files.reduce((n, f) => n + f.added, 0);
  const removed = files.reduce((n, f) => n + f.removed, 0);
  const root = h("div", { class: "diff-view", id },
    h("p", { class: "diff-summary muted" },
      `${files.length} file${files.length === 1 ? "" : "s"} changed, `,
      h("span", { class: "diff-plus" }, `+${added}`), " ",
      h("span", { class: "diff-minus" }, `−${removed}`),
      answer.truncated ? h("span", { class: "chip chip-warn diff-truncated" }, "truncated") : null),
    answer.truncated ? h("p", { class: "muted" },
      "The whole diff is too large to show at once; open a file to read its own diff.") : null,
    files.length === 0 ? h("p", { class: "muted" }, "No changes.") : null);
  const list = h("ul", { class: "diff-files" });
  const frag = document.createDocumentFragment();
  for (const file of files) frag.append(fileItem(missionId, file, Boolean(answer.truncated) && perFile));
  list.append(frag);
  root.append(list);
  return root;
}

function fileItem(missionId, file, lazy) {
  const body = h("div", { class: "diff-file-body" });
  const details = h("details", { class: "diff-file", "data-path": file.path },
    h("summary", {},
      h("span", { class: `diff-status diff-status-${file.status}`, title: statusTitle(file.status) }, file.status),
      h("span", { class: "mono diff-path" }, file.oldPath && file.status === "R" ? `${file.oldPath} → ${file.path}` : file.path),
      file.binary ? h("span", { class: "chip" }, "binary") : null,
      file.symlink ? h("span", { class: "chip" }, "symlink") : null,
      h("span", { class: "diff-counts" },
        h("span", { class: "diff-plus" }, `+${file.added}`), " ",
        h("span", { class: "diff-minus" }, `−${file.removed}`))),
    body);
  let loaded = false;
  details.addEventListener("toggle", async () => {
    if (!details.open || loaded) return;
    loaded = true;
    if (!lazy) {
      fill(body, diffBody(file));
      return;
    }
    fill(body, h("p", { class: "muted" }, "Loading…"));
    try {
      const one = await api("GET", `/api/missions/${encodeURIComponent(missionId)}/git-diff/${encodeURIComponent(file.path)}`);
      const [parsed] = parseDiff(one.diff);
      fill(body, diffBody(parsed || file),
        one.truncated ? h("p", { class: "muted diff-truncated" }, "This file's diff is truncated.") : null);
    } catch (err) {
      loaded = false;
      fill(body, h("p", { class: "field-error" }, `Could not load the diff: ${err.message}`));
    }
  });
  return h("li", {}, details);
}

function fill(el, ...children) {
  el.replaceChildren();
  appendChildren(el, children);
}

const STATUS_TITLES = { A: "added", M: "modified", D: "deleted", R: "renamed", T: "type changed" };
function statusTitle(s) {
  return STATUS_TITLES[s] || s;
}
