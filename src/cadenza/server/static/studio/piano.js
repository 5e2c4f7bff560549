// The /studio page's on-screen piano (C2 .. C7) and computer keyboard; the keys of the five
// likeliest next notes light up.
import { $ } from "/static/common.js";
import { history } from "./ask.js";
import { allUp, noteDown, noteUp } from "./input.js";
import { HIGH, KEYMAP, LOW, isBlack, pitchName, state } from "./state.js";

const keyEls = new Map();
export const keyEl = (p) => keyEls.get(p);

export function buildPiano() {
  const el = $("piano");
  const whites = [];
  for (let p = LOW; p <= HIGH; p++) if (!isBlack(p)) whites.push(p);
  const w = 100 / whites.length;
  let wi = 0;
  for (let p = LOW; p <= HIGH; p++) {
    const k = document.createElement("div");
    k.className = `key ${isBlack(p) ? "black" : "white"}`;
    k.dataset.pitch = String(p);
    k.title = pitchName(p);
    if (isBlack(p)) {
      k.style.left = `${(wi - 0.3) * w}%`; k.style.width = `${0.6 * w}%`;
    } else {
      k.style.left = `${wi * w}%`; k.style.width = `${w}%`; wi++;
    }
    k.innerHTML = `<span class="prob"></span><span class="kb"></span><span class="name">${isBlack(p) ? "" : pitchName(p)}</span>`;
    el.appendChild(k);
    keyEls.set(p, k);
  }
  let pointerPitch = null;
  el.addEventListener("pointerdown", (ev) => {
    const k = ev.target.closest(".key");
    if (!k) return;
    ev.preventDefault();
    pointerPitch = Number(k.dataset.pitch);
    noteDown(pointerPitch, 90, ev.timeStamp || performance.now(), "mouse");
  });
  const up = (ev) => { if (pointerPitch !== null) { noteUp(pointerPitch, ev.timeStamp || performance.now()); pointerPitch = null; } };
  window.addEventListener("pointerup", up);
  window.addEventListener("pointercancel", up);
  labelKeys();
}

function labelKeys() {
  for (const [p, k] of keyEls) {
    const off = p - state.keyboardBase;
    k.querySelector(".kb").textContent = off >= 0 && off < KEYMAP.length ? KEYMAP[off] : "";
  }
  $("base-name").textContent = pitchName(state.keyboardBase);
}

export function setPredictions(preds) {
  state.predictions = preds || [];
  const top = Math.max(1e-9, ...state.predictions.map((p) => p.probability));
  for (const k of keyEls.values()) { k.classList.remove("predicted"); k.style.removeProperty("--p"); }
  for (const p of state.predictions) {
    const k = keyEl(p.pitch);
    if (!k) continue;
    k.classList.add("predicted");
    k.style.setProperty("--p", (0.25 + 0.75 * p.probability / top).toFixed(3));
    k.querySelector(".prob").textContent = `${Math.round(p.probability * 100)}%`;
  }
  $("predictions-text").textContent = state.predictions.length
    ? "Next, the model thinks: " + state.predictions.map((p) => `${p.name} ${(p.probability * 100).toFixed(0)}%`).join(", ")
    : "";
}

function typing(ev) {
  const t = ev.target;
  return t && (t.tagName === "INPUT" && t.type !== "checkbox" && t.type !== "range" || t.tagName === "SELECT" || t.tagName === "TEXTAREA");
}

export function setupKeyboard() {
  window.addEventListener("keydown", (ev) => {
    const k = ev.key.toLowerCase();
    if (typing(ev)) return;   // a number field keeps its own keys (and its own undo)
    if ((ev.ctrlKey || ev.metaKey) && k === "z") { ev.preventDefault(); history(ev.shiftKey ? "redo" : "undo"); return; }
    if ((ev.ctrlKey || ev.metaKey) && k === "y") { ev.preventDefault(); history("redo"); return; }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (k === "z" || k === "x") {
      state.keyboardBase = Math.min(HIGH - 12, Math.max(LOW, state.keyboardBase + (k === "z" ? -12 : 12)));
      labelKeys();
      return;
    }
    const off = KEYMAP.indexOf(k);
    if (off < 0) return;
    ev.preventDefault();
    if (ev.repeat) return;
    noteDown(state.keyboardBase + off, 90, ev.timeStamp || performance.now(), "keyboard");
  });
  window.addEventListener("keyup", (ev) => {
    const off = KEYMAP.indexOf(ev.key.toLowerCase());
    if (off >= 0) noteUp(state.keyboardBase + off, ev.timeStamp || performance.now());
  });
  window.addEventListener("blur", allUp);
}
