// The /studio page's piano roll: the piece, the take while playing along, the open suggestion
// (dashed green, the notes it would replace dimmed), the selected bars (drag across them) and the
// playhead. Right-click a note to delete it.
import { $, setStatus } from "/static/common.js";
import { api, applyState, enqueue, refreshPredictions } from "./api.js";
import { playedNotes } from "./audio.js";
import { liveNotes } from "./live.js";
import { render } from "./main.js";
import { MODEL_COLOR, PERSON_COLOR, PREVIEW_COLOR, S, isBlack, pitchName, state } from "./state.js";

function layout() {
  const c = $("roll");
  const w = c.clientWidth, h = c.clientHeight;
  const all = playedNotes().concat(state.notes, liveNotes());
  let end = 0;
  for (const n of all) end = Math.max(end, n.start + n.duration);
  if (state.recording) end = Math.max(end, state.recordOrigin + state.barBeats);
  const bars = Math.max(4, Math.ceil(end / state.barBeats - 1e-9) + 1);
  const left = 34;
  const beatWidth = (w - left - 4) / (bars * state.barBeats);
  let lo = 127, hi = 0;
  for (const n of all) { lo = Math.min(lo, n.pitch); hi = Math.max(hi, n.pitch); }
  if (lo > hi) { lo = 55; hi = 79; }
  const mid = (lo + hi) / 2, half = Math.max(12, (hi - lo) / 2 + 2);
  const lo2 = Math.floor(mid - half), hi2 = Math.ceil(mid + half);
  return { left, top: 16, width: w, height: h, beatWidth, barBeats: state.barBeats, bars,
           lo: lo2, hi: hi2, rowH: (h - 16) / (hi2 - lo2 + 1) };
}

export function drawRoll() {
  const c = $("roll");
  const dpr = window.devicePixelRatio || 1;
  const cw = Math.round(c.clientWidth * dpr), ch = Math.round(c.clientHeight * dpr);
  if (cw && ch && (c.width !== cw || c.height !== ch)) { c.width = cw; c.height = ch; }
  const L = layout();
  state.rollLayout = L;
  const g = c.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.fillStyle = "#12151f"; g.fillRect(0, 0, L.width, L.height);
  const X = (beat) => L.left + beat * L.beatWidth;
  const rowH = L.rowH;
  const Y = (p) => L.height - (p - L.lo + 1) * rowH;
  // C rows and pitch labels
  g.font = "10px system-ui, sans-serif";
  for (let p = L.lo; p <= L.hi; p++) {
    if (isBlack(p)) { g.fillStyle = "#ffffff06"; g.fillRect(L.left, Y(p), L.width, rowH); }
    if (p % 12 === 0) { g.fillStyle = "#ffffff70"; g.fillText(pitchName(p), 3, Y(p) + rowH - 1); }
  }
  // selection
  if (state.selection) {
    const xa = X(state.selection.from_bar * L.barBeats), xb = X(state.selection.to_bar * L.barBeats);
    g.fillStyle = "#ffffff22"; g.fillRect(xa, 0, xb - xa, L.height);
    g.strokeStyle = "#e9d75a"; g.lineWidth = 1.5; g.strokeRect(xa + 0.75, 0.75, xb - xa - 1.5, L.height - 1.5);
  }
  // bar lines and numbers
  g.lineWidth = 1;
  for (let b = 0; b <= L.bars; b++) {
    const x = Math.round(X(b * L.barBeats)) + 0.5;
    g.strokeStyle = "#ffffff30"; g.beginPath(); g.moveTo(x, 0); g.lineTo(x, L.height); g.stroke();
    if (b < L.bars) { g.fillStyle = "#ffffff90"; g.fillText(String(b + 1), x + 4, 11); }
    g.strokeStyle = "#ffffff0c";
    for (let k = 1; k < L.barBeats && b < L.bars; k++) {
      const xx = Math.round(X(b * L.barBeats + k)) + 0.5;
      g.beginPath(); g.moveTo(xx, L.top); g.lineTo(xx, L.height); g.stroke();
    }
  }
  const stats = { person: 0, model: 0, preview: 0, replaced: 0 };
  const gone = new Set(state.suggestion ? state.suggestion.replaces : []);
  const rect = (n) => [X(n.start), Y(n.pitch), Math.max(2, n.duration * L.beatWidth - 1), Math.max(2, rowH - 1)];
  for (const n of state.notes) {
    g.globalAlpha = gone.has(n.id) ? 0.25 : 0.95;
    g.fillStyle = n.by === "model" ? MODEL_COLOR : PERSON_COLOR;
    g.fillRect(...rect(n));
    if (gone.has(n.id)) stats.replaced++; else stats[n.by === "model" ? "model" : "person"]++;
  }
  for (const n of liveNotes()) {      // the take, as it happens
    g.globalAlpha = 0.75;
    g.fillStyle = n.by === "model" ? MODEL_COLOR : PERSON_COLOR;
    g.fillRect(...rect(n));
    stats.live = (stats.live || 0) + 1;
  }
  g.globalAlpha = 1;
  if (state.suggestion) {
    g.setLineDash([4, 3]); g.lineWidth = 1.5; g.strokeStyle = PREVIEW_COLOR; g.fillStyle = PREVIEW_COLOR + "80";
    for (const n of state.suggestion.notes) {
      const [x, y, w, h] = rect(n);
      g.fillRect(x, y, w, h); g.strokeRect(x + 0.75, y + 0.75, Math.max(1, w - 1.5), Math.max(1, h - 1.5));
      stats.preview++;
    }
    g.setLineDash([]);
  }
  if (state.recording) {
    const beat = state.recordOrigin + (performance.now() - state.recordStart) * state.tempo / 60000;
    const x = X(beat);
    g.strokeStyle = "#ff5a5a"; g.lineWidth = 2; g.beginPath(); g.moveTo(x, 0); g.lineTo(x, L.height); g.stroke();
  } else if (state.playheadBeat !== null) {
    const x = X(state.playheadBeat);
    g.strokeStyle = "#ffffff"; g.lineWidth = 2; g.beginPath(); g.moveTo(x, 0); g.lineTo(x, L.height); g.stroke();
  }
  state.rollStats = stats;
}

export function setupRoll() {
  const c = $("roll");
  let dragFrom = null;
  const barAt = (ev) => {
    const L = state.rollLayout || layout();
    const r = c.getBoundingClientRect();
    const beat = (ev.clientX - r.left - L.left) / L.beatWidth;
    return Math.min(L.bars - 1, Math.max(0, Math.floor(beat / L.barBeats)));
  };
  const select = (a, b) => {
    state.selection = { from_bar: Math.min(a, b), to_bar: Math.max(a, b) + 1 };
    render();
  };
  c.addEventListener("pointerdown", (ev) => {
    if (ev.button !== 0) return;
    dragFrom = barAt(ev);
    select(dragFrom, dragFrom);
    try { c.setPointerCapture(ev.pointerId); } catch (e) { /* fine */ }
  });
  c.addEventListener("pointermove", (ev) => { if (dragFrom !== null && ev.buttons) select(dragFrom, barAt(ev)); });
  for (const t of ["pointerup", "pointercancel"]) c.addEventListener(t, () => { dragFrom = null; });
  c.addEventListener("dblclick", () => { state.selection = null; render(); });
  c.addEventListener("contextmenu", (ev) => {   // right-click a note: delete it (undo brings it back)
    const n = noteAt(ev);
    if (!n) return;
    ev.preventDefault();
    enqueue(async () => {
      applyState(await api("POST", S("/delete"), { ids: [n.id] }));
      await refreshPredictions();
      setStatus(`Deleted ${pitchName(n.pitch)} at beat ${n.start + 1}.`);
    });
  });
}

function noteAt(ev) {
  const L = state.rollLayout, r = $("roll").getBoundingClientRect();
  if (!L) return null;
  const beat = (ev.clientX - r.left - L.left) / L.beatWidth;
  const pitch = L.lo - 1 + Math.ceil((L.height - (ev.clientY - r.top)) / L.rowH);
  return state.notes.find((n) => n.pitch === pitch && n.start <= beat && beat <= n.start + n.duration) || null;
}
