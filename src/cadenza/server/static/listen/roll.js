// The /listen page's piano roll: 8 beats behind and 24 ahead of the playhead, one colour per voice.
import { $ } from "/static/common.js";
import { playheadBeat } from "./audio.js";
import { state, tl } from "./state.js";

const VOICE_COLORS = ["#7fb2ff", "#ffb35c", "#8ee08a", "#f27ea9", "#c9a0ff", "#5fd6d0"];

export function drawRoll() {
  const c = $("roll");
  const dpr = window.devicePixelRatio || 1;
  const cw = Math.round(c.clientWidth * dpr), ch = Math.round(c.clientHeight * dpr);
  if (cw && ch && (c.width !== cw || c.height !== ch)) { c.width = cw; c.height = ch; }
  const g = c.getContext("2d"), w = c.width, h = c.height;
  const bars = tl.bars;
  g.fillStyle = "#12151f"; g.fillRect(0, 0, w, h);
  const ph = state.playing || bars.length ? playheadBeat() : 0;
  state.playheadBeat = ph;
  const before = 8, after = 24, span = before + after;
  const x0 = ph - before;
  const X = (beat) => ((beat - x0) / span) * w;
  let lo = 127, hi = 0;
  for (const b of bars) for (const n of b.notes) { if (n.pitch < lo) lo = n.pitch; if (n.pitch > hi) hi = n.pitch; }
  if (lo > hi) { lo = 48; hi = 84; }
  const mid = (lo + hi) / 2, half = Math.max(12, (hi - lo) / 2 + 2);
  lo = mid - half; hi = mid + half;
  const rowH = h / (hi - lo + 1);
  const Y = (p) => h - (p - lo + 1) * rowH;
  // bar lines and segment labels
  g.strokeStyle = "#ffffff14"; g.lineWidth = 1;
  for (const b of bars) {
    if (b.start < x0 - 1 || b.start > x0 + span) continue;
    const x = Math.round(X(b.start)) + 0.5;
    g.beginPath(); g.moveTo(x, 0); g.lineTo(x, h); g.stroke();
  }
  g.font = `${Math.round(11 * dpr)}px system-ui, sans-serif`;
  g.fillStyle = "#ffffff88";
  for (const s of tl.segmentsByBeat) {
    if (s.beat < x0 - 8 || s.beat > x0 + span) continue;
    const c2 = s.controls || {};
    g.fillText([c2.mood, c2.style].filter(Boolean).join(" · "), X(s.beat) + 4 * dpr, 14 * dpr);
  }
  let drawn = 0;
  for (const b of bars) {
    if (b.end < x0 || b.start > x0 + span) continue;
    for (const n of b.notes) {
      const xa = X(n.start), xb = X(n.start + n.duration);
      if (xb < 0 || xa > w) continue;
      const col = VOICE_COLORS[(Number(n.voice) || 0) % VOICE_COLORS.length];
      g.globalAlpha = n.start + n.duration < ph ? 0.45 : 0.95;
      g.fillStyle = col;
      g.fillRect(xa, Y(n.pitch), Math.max(2, xb - xa - 1), Math.max(2, rowH - 1));
      drawn++;
    }
  }
  g.globalAlpha = 1;
  const px = Math.round(X(ph)) + 0.5;
  g.strokeStyle = "#ff5a5a"; g.lineWidth = 2 * dpr;
  g.beginPath(); g.moveTo(px, 0); g.lineTo(px, h); g.stroke();
  state.rollNotesDrawn = drawn;
}
