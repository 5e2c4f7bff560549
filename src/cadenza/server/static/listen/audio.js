// The /listen page's clock and sound: each bar gets its AudioContext time ("anchor") when the
// scheduler reaches it, and its notes go to the synthesizer LOOKAHEAD seconds ahead.
import { startSynth } from "/static/synth.js";
import { LOOKAHEAD, LOOKAHEAD_HIDDEN, START_DELAY, state, tl } from "./state.js";

export const audio = { ctx: null, synth: null, loading: null };   // AudioContext, synth, its loading

export const now = () => (audio.ctx ? audio.ctx.currentTime : performance.now() / 1000);

export function beatsPerBar(ts) {
  const m = /^(\d+)\/(\d+)$/.exec(ts || "");
  return m ? (Number(m[1]) * 4) / Number(m[2]) : 4;
}

function timeOf(bar, beat) { return bar.time + ((beat - bar.start) * 60) / bar.tempo; }

export function playheadBeat() {
  const t = now(), bars = tl.bars;
  let b = null;
  for (let i = Math.min(tl.nextBar, bars.length - 1); i >= 0; i--) {
    if (bars[i].time !== null && bars[i].time <= t) { b = bars[i]; break; }
  }
  if (!b) return bars.length ? bars[0].start : 0;
  return Math.min(b.end, b.start + ((t - b.time) * b.tempo) / 60);
}

function anchor(i) {
  const bar = tl.bars[i];
  if (bar.time !== null) return bar.time;
  const prev = i > 0 ? tl.bars[i - 1] : null;
  const due = prev && prev.time !== null ? timeOf(prev, prev.end) : now() + START_DELAY;
  bar.time = Math.max(due, now() + 0.05);   // late: wait, never skip
  tl.tempoChanges.push({ beat: bar.start, tempo: bar.tempo });
  return bar.time;
}

export function channelFor(note) {
  // drums on channel 9 (GM percussion); voice 0.. -> the other channels
  if (note.drum) return 9;
  const v = Math.max(0, Number(note.voice) || 0) % 15;
  return v >= 9 ? v + 1 : v;
}

export function schedule() {
  if (!state.playing || (audio.loading && state.synth === "loading")) return;
  const horizon = now() + (document.hidden ? LOOKAHEAD_HIDDEN : LOOKAHEAD);
  while (tl.nextBar < tl.bars.length) {
    const bar = tl.bars[tl.nextBar];
    if (anchor(tl.nextBar) > horizon) break;
    while (bar.next < bar.notes.length) {
      const n = bar.notes[bar.next];
      const t = timeOf(bar, n.start);
      if (t > horizon) break;
      play(n, t, (n.duration * 60) / bar.tempo);
      bar.next++;
    }
    if (bar.next < bar.notes.length) break;
    tl.nextBar++;
  }
}

function play(n, t, seconds) {
  tl.heard.push(n);
  state.notesPlayed++;
  const synth = audio.synth;
  if (!synth) return;
  const ch = channelFor(n);
  const program = Math.max(0, Math.min(127, Number(n.program) || 0));
  const when = Math.max(t, now());
  if (tl.channelProgram.get(ch) !== program) {
    synth.programChange(ch, program, { time: when });
    tl.channelProgram.set(ch, program);
  }
  const vel = Math.max(1, Math.min(127, Math.round(n.velocity)));
  synth.noteOn(ch, n.pitch, vel, { time: when });
  synth.noteOff(ch, n.pitch, { time: when + Math.max(0.03, seconds - 0.005) });
}

export function loadSynth() {
  audio.loading ??= startSynth(audio.ctx, state, "the roll still runs", (s) => { audio.synth = s; });
  return audio.loading;
}
