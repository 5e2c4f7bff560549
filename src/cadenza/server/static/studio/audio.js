// The /studio page's sound: the AudioContext and synth (opened on the first touch), the notes
// you play, the metronome, and playing the piece (with the open suggestion) from its start.
import { $, problem } from "/static/common.js";
import { startSynth } from "/static/synth.js";
import { render } from "./main.js";
import { LOOKAHEAD_MS, state } from "./state.js";

export const player = { ctx: null, synth: null, loading: null };   // AudioContext, synth, its loading
let playTimer = null, playStartCtx = 0, playStartBeat = 0, playEndBeat = 0;
let metroTimer = null, metroNext = 0, metroT0 = 0;

export function audio() {
  if (!player.ctx) {
    try { player.ctx = new AudioContext({ latencyHint: "interactive" }); } catch (e) { problem(`no audio: ${e.message}`); return null; }
  }
  if (player.ctx.state === "suspended") player.ctx.resume().catch(() => {});
  if (!player.loading) loadSynth();
  return player.ctx;
}

function loadSynth() {
  player.loading ??= startSynth(player.ctx, state, "everything else works", (s) => { player.synth = s; });
  return player.loading;
}

export function sound(pitch, velocity) { audio(); if (player.synth) player.synth.noteOn(0, pitch, velocity); }
export function unsound(pitch) { if (player.synth) player.synth.noteOff(0, pitch); }

// ---- metronome -------------------------------------------------------------------------------
export function startMetronome(t0ms) {
  stopMetronome();
  if (!$("metronome").checked) return;
  metroT0 = t0ms; metroNext = 0;
  const tick = () => {
    const spb = 60000 / state.tempo;
    const horizon = performance.now() + LOOKAHEAD_MS * 2;
    while (metroT0 + metroNext * spb < horizon) {
      const at = metroT0 + metroNext * spb;
      const down = metroNext % Math.max(1, Math.round(state.barBeats)) === 0;
      click(at, down);
      metroNext++;
    }
  };
  tick();
  metroTimer = setInterval(tick, 50);
}

function click(atMs, down) {
  state.metronomeClicks++;
  if (!audio() || !player.synth) return;
  const synth = player.synth, ctx = player.ctx;
  const when = Math.max(ctx.currentTime, ctx.currentTime + (atMs - performance.now()) / 1000);
  const note = down ? 76 : 77;   // GM percussion: high / low wood block
  synth.noteOn(9, note, down ? 110 : 80, { time: when });
  synth.noteOff(9, note, { time: when + 0.08 });
}

export function stopMetronome() { if (metroTimer) clearInterval(metroTimer); metroTimer = null; }

export function playedNotes() {
  // the piece as it would be with the open suggestion
  const g = state.suggestion;
  if (!g) return state.notes;
  const gone = new Set(g.replaces);
  return state.notes.filter((n) => !gone.has(n.id)).concat(g.notes.map((n) => ({ ...n, by: "model" })));
}

export async function play() {
  const notes = playedNotes().slice().sort((a, b) => a.start - b.start);
  if (!notes.length) { problem("nothing to play yet: play some notes first"); return; }
  if (!audio()) return;
  await player.loading;
  const synth = player.synth, ctx = player.ctx;
  if (!synth) return;
  const spb = 60 / state.tempo;
  playStartBeat = 0;
  playEndBeat = Math.max(...notes.map((n) => n.start + n.duration));
  playStartCtx = ctx.currentTime + 0.1;
  const programs = new Map();   // one instrument per author: the first of their notes' programs
  for (const n of notes) {
    const ch = n.by === "model" ? 1 : 0;
    if (!programs.has(ch)) { programs.set(ch, n.program || 0); synth.programChange(ch, n.program || 0); }
    const t = playStartCtx + n.start * spb;
    synth.noteOn(ch, n.pitch, n.velocity || 80, { time: t });
    synth.noteOff(ch, n.pitch, { time: t + Math.max(0.03, n.duration * spb - 0.005) });
  }
  state.playing = true;
  startMetronome(performance.now() + 100);
  playTimer = setInterval(() => {
    const b = (ctx.currentTime - playStartCtx) / spb;
    state.playheadBeat = Math.max(0, b);
    if (b > playEndBeat + 0.25) stopPlayback();
  }, 30);
  render();
}

export function stopPlayback() {
  if (playTimer) clearInterval(playTimer);
  playTimer = null;
  if (state.playing && player.synth) player.synth.stopAll(true);
  if (!state.recording) stopMetronome();
  state.playing = false; state.playheadBeat = null;
  render();
}
