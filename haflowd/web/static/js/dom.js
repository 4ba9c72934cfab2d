// Small element helpers. Text from the daemon only ever enters the page as
// text nodes (through h()); see artifacts.js for the one sanitised exception.

/** Create an element; strings among children become text nodes (never HTML). */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  appendChildren(el, children);
  return el;
}

export function appendChildren(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace a container's children, keeping keyboard focus on the same control. */
export function replaceKeepFocus(container, ...children) {
  const active = document.activeElement;
  const key = active && container.contains(active) ? active.dataset.focusKey : null;
  container.replaceChildren();
  appendChildren(container, children);
  if (key) {
    const again = container.querySelector(`[data-focus-key="${CSS.escape(key)}"]`);
    if (again) again.focus({ preventScroll: true });
  }
}

/** True when `el` already shows `value`; otherwise remembers it and answers false. */
export function sameSignature(el, value) {
  const signature = JSON.stringify(value);
  if (el.dataset.sig === signature) return true;
  el.dataset.sig = signature;
  return false;
}

export const $ = (id) => document.getElementById(id);
