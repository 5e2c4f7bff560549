// Notes in, on the /studio page: from the piano, the computer keyboard or MIDI in. Not recording, a
// note is appended after the piece's last note (the "Note" length); recording, notes go on the beat
// grid (16ths at the page's tempo) from the bar line after the piece, timed by the events' own time
// stamps; playing along, they go to the live socket. Every note goes to POST .../notes.
import { $, setStatus } from "/static/common.js";
import { api, applyState, enqueue } from "./api.js";
import { audio, sound, startMetronome, stopMetronome, stopPlayback, unsound } from "./audio.js";
import { liveNote } from "./live.js";
import { render } from "./main.js";
import { keyEl } from "./piano.js";
import { S, pitchName, q16, state } from "./state.js";

const held = new Map();                  // pitch -> {t, velocity, source}

export function pieceEnd() {
  let end = 0;
  for (const n of state.notes) end = Math.max(end, n.start + n.duration);
  return end;
}

function sendNotes(notes) {
  return enqueue(async () => {
    state.sent.push(...notes);
    const s = await api("POST", S("/notes"), { notes, predict: true });
    applyState(s);
    if (!state.recording) return;
    noteWords(notes[notes.length - 1], s, " (recording)");
  });
}

function noteWords(n, s, extra = "") {
  const ms = s.elapsed_ms != null ? ` · predictions in ${Math.round(s.elapsed_ms)} ms` : "";
  setStatus(`${pitchName(n.pitch)} at beat ${+(n.start + 1).toFixed(2)}, ${n.duration} beat${n.duration === 1 ? "" : "s"}${extra}${ms}`);
}

export function noteDown(pitch, velocity = 90, t = performance.now(), source = "key") {
  if (pitch < 0 || pitch > 127 || held.has(pitch)) return;
  held.set(pitch, { t, velocity, source });
  state.played++;
  sound(pitch, velocity);
  keyEl(pitch)?.classList.add("down");
  if (state.live.on) { liveNote(true, pitch, velocity, t); return; }
  if (!state.recording) {
    const len = Number($("note-length").value) || 1;
    enqueue(async () => {
      const n = { pitch, start: Math.round(pieceEnd() * 1e6) / 1e6, duration: len, velocity };
      state.sent.push(n);
      const s = await api("POST", S("/notes"), { notes: [n], predict: true });
      applyState(s);
      noteWords(n, s);
    });
  }
}

export function noteUp(pitch, t = performance.now()) {
  const h = held.get(pitch);
  if (!h) return;
  held.delete(pitch);
  unsound(pitch);
  keyEl(pitch)?.classList.remove("down");
  if (state.live.on) { liveNote(false, pitch, 0, t); return; }
  if (state.recording && h.t >= state.recordStart - 1) {
    const beatsPerMs = state.tempo / 60000;
    const start = state.recordOrigin + Math.max(0, q16((h.t - state.recordStart) * beatsPerMs));
    const duration = Math.max(0.25, q16((t - h.t) * beatsPerMs));
    sendNotes([{ pitch, start, duration, velocity: h.velocity }]);
  }
}

export function allUp() { for (const p of [...held.keys()]) noteUp(p); }

export function toggleRecord() {
  if (state.recording) {
    allUp();
    state.recording = false;
    stopMetronome();
    setStatus("Recording stopped.");
  } else {
    audio();
    stopPlayback();
    state.recordOrigin = Math.ceil(pieceEnd() / state.barBeats - 1e-9) * state.barBeats;
    state.recordStart = performance.now();
    state.recording = true;
    startMetronome(state.recordStart);
    setStatus(`Recording from bar ${Math.round(state.recordOrigin / state.barBeats) + 1} at ${state.tempo} bpm (16ths)…`);
  }
  render();
}
