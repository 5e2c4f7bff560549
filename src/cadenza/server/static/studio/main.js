// The /studio page: a person and the model writing one piece together, a client of /api/studio.
//
// Input: the on-screen piano (mouse; computer keyboard), Web MIDI input where the browser has
// it. Not recording, a note is appended after the piece's last note (the "Note" length);
// recording, notes go on the beat grid (16ths at the page's tempo) from the bar line after the
// piece, timed by the events' own time stamps. Every note goes to POST .../notes, and the keys
// of the five likeliest next notes in its answer light up.
//
// Ask: continue, answer, harmonize (the selected bars, or the whole piece), infill (bars selected
// by dragging in the roll; by default it keeps your notes there and writes around them), each with
// the constraint controls. The Key selector is the key the model is given, before and after notes. A
// suggestion shows in the roll as a preview (dashed green, the notes it would replace dimmed) until it is accepted, rejected or regenerated.
//
// Modules: state (the page's state and helpers), api (requests and their queue), input (notes in,
// recording), piano (keys, computer keyboard), audio (synth, metronome, playback), roll, ask
// (suggestions, undo, export), live (play along), midi (Web MIDI); this one starts a piece, wires
// the controls and says what the buttons can do.
//
// Testing hook: window.cadenza.debug.state (state.js; read-only by convention).

import { $, clearProblem, problem, setStatus, withToken } from "/static/common.js";
import { api, applyState, enqueue } from "./api.js";
import { ask, checkBox, decide, download, history, infillWords, loadBounds } from "./ask.js";
import { audio, play, player, startMetronome, stopMetronome, stopPlayback } from "./audio.js";
import { toggleRecord } from "./input.js";
import { closeLive, liveKeep, liveOpen, liveStart, liveStop } from "./live.js";
import { sendToMidiOut, setupMidi } from "./midi.js";
import { buildPiano, setupKeyboard } from "./piano.js";
import { drawRoll, setupRoll } from "./roll.js";
import { KEYS, S, state } from "./state.js";

async function newSession() {
  closeLive();
  stopPlayback();
  if (state.recording) toggleRecord();
  clearProblem();
  const body = { tempo: state.tempo, key: state.key };
  const s = await api("POST", "/api/studio/sessions", body);
  state.session = s.session;
  state.suggestion = null; state.selection = null; state.sent = [];
  applyState(s);
  state.ready = true;
  setStatus(`New piece at ${Math.round(s.tempo)} bpm in ${s.key}, ${s.time_signature}. Play a few notes.`);
}

export function render() {
  const n = state.notes.length;
  const person = state.notes.filter((x) => x.by === "person").length;
  state.credit = n ? { person, model: n - person, human_percent: Math.round(1000 * person / n) / 10 } : null;
  $("credit").textContent = n ? `you wrote ${Math.round(100 * person / n)}% of the notes (${person} of ${n})` : "";
  $("undo").disabled = !state.canUndo;
  $("redo").disabled = !state.canRedo;
  $("download-midi").disabled = $("download-wav").disabled = !n;
  for (const id of ["continue", "answer", "harmonize"]) $(id).disabled = !n;
  $("infill").disabled = !state.selection;
  const note = state.selection ? infillWords(state.selection) : "";
  $("infill-note").hidden = !note;
  $("infill-note").textContent = note ? note[0].toUpperCase() + note.slice(1) : "";
  $("infill").textContent = state.selection
    ? `Infill bar${state.selection.to_bar - state.selection.from_bar > 1 ? "s" : ""} ${state.selection.from_bar + 1}` +
      (state.selection.to_bar - state.selection.from_bar > 1 ? `–${state.selection.to_bar}` : "")
    : "Infill selection";
  $("send-midi").disabled = !$("midi-out").value || !n;
  const L = state.live;
  $("live").classList.toggle("on", L.on);
  $("live").textContent = L.on ? "■ Stop playing along" : "♫ Play along";
  $("keep").disabled = !liveOpen() || !(L.person.length || L.model.length) || L.status === "keeping";
  for (const id of ["live-role", "live-density", "live-count-in"]) $(id).disabled = L.on;
  $("live-status").textContent = L.status === "off" ? "" : `${L.status}: ${L.person.length} notes by you, ` +
    `${L.model.length} by Cadenza` + (L.late ? `, ${L.late} arrived late` : "");
  $("record").classList.toggle("on", state.recording);
  $("record").textContent = state.recording ? "■ Stop recording" : "● Record";
  $("play").textContent = state.playing ? "■ Stop" : "▶ Play";
  const g = state.suggestion;
  $("suggestion").hidden = !g;
  if (g) {
    const r = g.request, kept = (g.info && g.info.kept) || 0;
    const where = r.from_bar == null ? (g.kind === "harmonize" ? " over the whole piece" : "") :
      r.to_bar - r.from_bar > 1 ? ` in bars ${r.from_bar + 1}–${r.to_bar}` : ` in bar ${r.from_bar + 1}`;
    const keptWords = !kept ? "" : `, keeping ${r.keep === "person" ? "your" : "the"} ${kept} note${kept === 1 ? "" : "s"} there`;
    $("suggestion-text").textContent = `Suggestion (${g.kind}${where}): ${g.notes.length} new notes` + keptWords +
      (g.replaces.length ? `, replacing ${g.replaces.length}` :
        g.kind === "infill" && !kept ? ", written from nothing (the bars were empty)" : "") +
      " — shown dashed in the roll.";
  }
  const tempoNote = state.tempo !== Math.round(state.sessionTempo) && n
    ? ` (the export keeps ${Math.round(state.sessionTempo)} bpm; New piece to change it)` : "";
  $("tempo-value").textContent = `${state.tempo} bpm`;
  $("tempo-value").title = tempoNote;
}

function setupControls() {
  $("home-link").href = withToken("/");
  const keySel = $("key"), scaleSel = $("scale");
  for (const k of KEYS) {
    const words = k.endsWith("m") ? `${k.slice(0, -1)} minor` : `${k} major`;
    keySel.add(new Option(words, k, false, k === "C"));
    scaleSel.add(new Option(words, k));
  }
  keySel.addEventListener("change", () => {
    state.key = keySel.value;
    if (!state.notes.length) { newSession().catch((e) => problem(e.message)); return; }
    enqueue(async () => {      // the notes stay; the model is given the new key from now on
      const s = await api("PATCH", S(), { key: state.key });
      state.suggestion = null;
      applyState(s);
      setStatus(`Key: ${keySel.options[keySel.selectedIndex].text}. Predictions and suggestions now follow it; your notes stay.`);
    });
  });
  $("infill-keep").addEventListener("change", render);
  $("role").addEventListener("change", render);
  $("new-piece").addEventListener("click", () => newSession().catch((e) => problem(e.message)));
  for (const el of document.querySelectorAll("input[type=number][data-bound]")) {
    el.addEventListener("input", () => checkBox(el));
    el.addEventListener("change", () => checkBox(el));
  }
  const tempo = $("tempo");
  tempo.addEventListener("input", () => { state.tempo = Number(tempo.value); render(); });
  tempo.addEventListener("change", () => {
    state.tempo = Number(tempo.value);
    if (!state.notes.length && !state.recording) newSession().catch((e) => problem(e.message));  // the export's tempo too
  });
  $("metronome").addEventListener("change", () => {
    if (!$("metronome").checked) stopMetronome();
    else if (state.recording) startMetronome(state.recordStart);
  });
  $("play").addEventListener("click", () => (state.playing ? stopPlayback() : play()));
  $("record").addEventListener("click", toggleRecord);
  $("live").addEventListener("click", () => (state.live.on ? liveStop() : liveStart()));
  $("keep").addEventListener("click", liveKeep);
  $("continue").addEventListener("click", () => ask("continue"));
  $("answer").addEventListener("click", () => ask("answer"));
  $("harmonize").addEventListener("click", () => ask("harmonize"));
  $("infill").addEventListener("click", () => ask("infill"));
  $("accept").addEventListener("click", () => decide("accept"));
  $("reject").addEventListener("click", () => decide("reject"));
  $("regenerate").addEventListener("click", () => decide("regenerate"));
  $("undo").addEventListener("click", () => history("undo"));
  $("redo").addEventListener("click", () => history("redo"));
  $("download-midi").addEventListener("click", () => download("midi"));
  $("download-wav").addEventListener("click", () => download("wav"));
  $("midi-out").addEventListener("change", render);
  $("send-midi").addEventListener("click", sendToMidiOut);
  // buttons keep no focus, so the computer keyboard keeps playing the piano
  for (const b of document.querySelectorAll("button")) b.addEventListener("mouseup", () => b.blur());
  // ... and a chosen menu item lets go of the keyboard too (or letters would pick menu items)
  for (const sel of document.querySelectorAll("select")) sel.addEventListener("change", () => sel.blur());
  window.addEventListener("pointerdown", () => audio(), { once: true });
}

function frame() {
  try {
    state.audioState = player.ctx ? player.ctx.state : null;
    drawRoll();
  } finally {
    requestAnimationFrame(frame);
  }
}

// ---- go ------------------------------------------------------------------------------------
setupControls();
buildPiano();
setupKeyboard();
setupRoll();
render();
requestAnimationFrame(frame);
audio();
setupMidi();
loadBounds().then(newSession).catch((e) => problem(`cannot start a session: ${e.message || e}`));
