// Play along on the /studio page, over WS .../live.
//
// The page sends its notes with their time stamps (performance.now() ms), the
// server sends each beat's accompaniment as soon as it is final, ahead of its time; the page
// plays it through the synthesizer (channel 2; count-in clicks on 10) and to the MIDI output.
import { $, clearProblem, problem, setStatus, withToken } from "/static/common.js";
import { api, applyState, enqueue, refreshPredictions } from "./api.js";
import { audio, player, stopPlayback } from "./audio.js";
import { allUp, pieceEnd, toggleRecord } from "./input.js";
import { render } from "./main.js";
import { midiOutPort } from "./midi.js";
import { S, state } from "./state.js";

let liveSocket = null;
const LIVE_LEAD_MS = 150;   // each beat is final this long before it: the socket and the page's own work fit in it

function liveBeat(t) {
  const L = state.live;
  return L.origin === null ? null : (t - L.origin) * (L.tempo || state.tempo) / 60000;
}

export function liveStart() {
  if (!state.session || state.live.on) return;
  audio();
  stopPlayback();
  if (state.recording) toggleRecord();
  clearProblem();
  const L = state.live;
  Object.assign(L, { on: true, status: "connecting", origin: null, tempo: state.tempo, events: [], person: [],
                     model: [], late: 0, kept: null });
  L.offset = Math.ceil(pieceEnd() / state.barBeats - 1e-9) * state.barBeats;
  const url = new URL(withToken(S("/live")), location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(url);
  liveSocket = ws;
  ws.onopen = () => ws.send(JSON.stringify({
    type: "start", now: performance.now(), role: $("live-role").value, density: $("live-density").value,
    count_in: Number($("live-count-in").value), scale: $("scale").value || null, key: state.key, tempo: state.tempo,
    lead_ms: LIVE_LEAD_MS }));
  ws.onmessage = (m) => liveMessage(JSON.parse(m.data));
  ws.onclose = (ev) => {
    if (liveSocket === ws) liveSocket = null;
    L.on = false;
    L.status = ev.code === 1000 ? "off" : `closed: ${ev.reason || ev.code}`;
    if (ev.code !== 1000) problem(`play along stopped: ${ev.reason || ev.code}`);
    render();
  };
  render();
}

export function liveStop() {
  if (liveSocket) liveSocket.send(JSON.stringify({ type: "stop" }));
  state.live.on = false;
  state.live.status = "stopped";
  allUp();
  render();
}

export function liveKeep() {
  if (!liveSocket) return;
  state.live.on = false;
  allUp();
  liveSocket.send(JSON.stringify({ type: "keep" }));
  state.live.status = "keeping";
  render();
}

export function liveNote(on, pitch, velocity, t) {
  const L = state.live;
  if (liveSocket && liveSocket.readyState === WebSocket.OPEN)
    liveSocket.send(JSON.stringify(on ? { type: "on", pitch, velocity, t } : { type: "off", pitch, t }));
  if (on) L.person.push({ pitch, t, end: null, velocity });
  else { const n = L.person.findLast((x) => x.pitch === pitch && x.end === null); if (n) n.end = t; }
}

function liveMessage(msg) {
  const L = state.live;
  if (msg.type === "ready") {
    if (msg.origin !== null && msg.origin !== undefined) L.origin = msg.origin;
    L.tempo = msg.tempo || L.tempo;
    L.status = "playing";
    setStatus(L.origin === null ? "Play along: start playing; your first note is the first downbeat."
      : `Play along at ${Math.round(L.tempo)} bpm: Cadenza follows your tempo.`);
  } else if (msg.type === "events") {
    L.tempo = msg.tempo || L.tempo;
    const now = performance.now(), port = midiOutPort();
    for (const e of msg.events) {
      e.received = now;
      L.events.push(e);
      if (now > e.t) L.late++;
      const ch = e.role === "click" ? 9 : 1;
      const synth = player.synth, ctx = player.ctx;
      if (synth && ctx) {
        const when = ctx.currentTime + Math.max(0, (e.t - now) / 1000);
        if (e.on) synth.noteOn(ch, e.pitch, e.velocity, { time: when }); else synth.noteOff(ch, e.pitch, { time: when });
      }
      if (port && e.role !== "click") {
        port.send([(e.on ? 0x90 : 0x80) | 1, e.pitch, e.on ? e.velocity : 0], e.t);
        state.midi.sent++;
      }
      if (e.role === "click") continue;
      if (e.on) L.model.push({ pitch: e.pitch, start: e.beat, duration: null });
      else { const n = L.model.findLast((x) => x.pitch === e.pitch && x.duration === null); if (n) n.duration = e.beat - n.start; }
    }
  } else if (msg.type === "kept") {
    L.kept = msg;
    L.status = "kept";
    enqueue(async () => {
      applyState(await api("GET", S()));
      await refreshPredictions();
      setStatus(`Kept the take from bar ${Math.round(msg.offset / state.barBeats) + 1}: ${msg.ids.length} notes.`);
    });
  } else if (msg.type === "stopped") {
    L.status = "stopped";
  } else if (msg.type === "error") {
    problem(msg.reason);
  }
  render();
}

export function liveNotes() {
  // the take so far, in the piece's beats (after the piece), for the roll
  const L = state.live, out = [];
  if (L.status === "off" || L.status === "kept") return out;
  const now = performance.now();
  for (const n of L.person) {
    const b = liveBeat(n.t);
    if (b === null) continue;
    out.push({ pitch: n.pitch, start: L.offset + Math.max(0, b), duration: Math.max(0.1, liveBeat(n.end ?? now) - b), by: "person" });
  }
  const head = liveBeat(now);
  for (const n of L.model) {
    if (n.start < 0 || (head !== null && n.start > head)) continue;       // shown as it sounds
    out.push({ pitch: n.pitch, start: L.offset + n.start, duration: n.duration ?? Math.max(0.1, head - n.start), by: "model" });
  }
  return out;
}

// The live socket is open (Keep needs it).
export const liveOpen = () => !!liveSocket;

// Close the live socket (a new piece).
export function closeLive() {
  if (liveSocket) { liveSocket.close(1000); liveSocket = null; state.live.on = false; state.live.status = "off"; }
}
