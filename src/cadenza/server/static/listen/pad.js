// The /listen page's mood pad: the stream's grid of valence (left to right) and energy (bottom to
// top) levels, each cell in the colour of the mood the status would name, with each mood's name on
// its own cell. The ring is where the music is; the dot is where you put the pad (shown once you
// touch it). Moving it sends at most one mood control message per PAD_SEND_MS.
import { $ } from "/static/common.js";
import { PAD_SEND_MS, pad, round, state } from "./state.js";
import { send } from "./stream.js";

const MOOD_COLORS = { sad: "#3b4a7a", tense: "#7a3f6a", calm: "#5f8fa8", happy: "#e0a84a", energetic: "#d0703a" };

export function drawPad() {
  const c = $("pad"), g = c.getContext("2d"), w = c.width, h = c.height;
  const p = state.ready && state.ready.pad;
  g.fillStyle = "#2a3047"; g.fillRect(0, 0, w, h);
  state.padLabels = [];
  if (p) {
    const n = p.levels, cw = w / n, ch = h / n;
    for (let v = 0; v < n; v++) {
      for (let e = 0; e < n; e++) {
        g.fillStyle = MOOD_COLORS[p.grid[v][e]] || "#6a8fb0";
        g.fillRect(v * cw, h - (e + 1) * ch, cw, ch);
      }
    }
    g.strokeStyle = "#ffffff30"; g.lineWidth = 1;
    for (let v = 1; v < n; v++) {
      for (let e = 0; e < n; e++) {   // a line only between cells of different moods
        if (p.grid[v][e] !== p.grid[v - 1][e]) { g.beginPath(); g.moveTo(v * cw, h - e * ch); g.lineTo(v * cw, h - (e + 1) * ch); g.stroke(); }
        if (p.grid[e][v] !== p.grid[e][v - 1]) { g.beginPath(); g.moveTo(e * cw, h - v * ch); g.lineTo((e + 1) * cw, h - v * ch); g.stroke(); }
      }
    }
    g.font = "600 12px system-ui, sans-serif"; g.textAlign = "center"; g.textBaseline = "middle";
    for (const [name, [v, e]] of Object.entries(p.moods)) {
      const half = g.measureText(name).width / 2 + 3;   // the word stays inside the pad
      const x = Math.min(w - half, Math.max(half, (v + 0.5) * cw)), y = h - (e + 0.5) * ch;
      g.fillStyle = "#000000a0"; g.fillText(name, x + 1, y + 1);
      g.fillStyle = "#ffffff"; g.fillText(name, x, y);
      state.padLabels.push({ name, valence: (v + 0.5) / n, energy: (e + 0.5) / n });
    }
    g.textAlign = "left"; g.textBaseline = "alphabetic";
  }
  const seg = state.currentSegment;
  if (seg && seg.controls && seg.controls.valence != null && seg.controls.energy != null) {
    g.strokeStyle = "#ffffff"; g.lineWidth = 2.5;
    g.beginPath(); g.arc(seg.controls.valence * w, (1 - seg.controls.energy) * h, 11, 0, 2 * Math.PI); g.stroke();
  }
  if (pad.touched) {
    g.fillStyle = "#ffffff"; g.strokeStyle = "#1d2230"; g.lineWidth = 1.5;
    g.beginPath(); g.arc(pad.valence * w, (1 - pad.energy) * h, 6, 0, 2 * Math.PI); g.fill(); g.stroke();
  }
}

let padTimer = null, padLast = 0;
function sendPad() {
  padTimer = null;
  padLast = performance.now();
  if (state.playing && send({ type: "control", valence: round(pad.valence), energy: round(pad.energy) })) state.padSends++;
}
function padChanged() {
  pad.touched = true;
  drawPad();
  if (padTimer) return;
  const wait = Math.max(0, PAD_SEND_MS - (performance.now() - padLast));
  padTimer = setTimeout(sendPad, wait);
}

function padFromEvent(ev) {
  const c = $("pad"), r = c.getBoundingClientRect();
  pad.valence = Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width));
  pad.energy = Math.min(1, Math.max(0, 1 - (ev.clientY - r.top) / r.height));
  padChanged();
}

// Click, drag or the arrow keys move the pad.
export function setupPad() {
  const c = $("pad");
  let dragging = false;
  c.addEventListener("pointerdown", (ev) => {
    dragging = true;
    padFromEvent(ev);
    try { c.setPointerCapture(ev.pointerId); } catch (e) { /* drag then ends at the pad's edge */ }
  });
  c.addEventListener("pointermove", (ev) => { if (dragging && ev.buttons) padFromEvent(ev); });
  for (const t of ["pointerup", "pointercancel"]) c.addEventListener(t, () => { dragging = false; });
  c.addEventListener("keydown", (ev) => {   // arrows move the pad too
    const step = ev.shiftKey ? 0.2 : 0.05;
    const d = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] }[ev.key];
    if (!d) return;
    ev.preventDefault();
    const seg = state.currentSegment && state.currentSegment.controls;
    if (!pad.touched && seg && seg.valence != null) { pad.valence = seg.valence; pad.energy = seg.energy; }   // from where the music is
    pad.valence = Math.min(1, Math.max(0, pad.valence + d[0]));
    pad.energy = Math.min(1, Math.max(0, pad.energy + d[1]));
    padChanged();
  });
}
