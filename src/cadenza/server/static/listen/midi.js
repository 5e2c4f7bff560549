// The /listen page's MIDI download: what was heard (handed to the synthesizer), one track per
// channel and program, with the tempo changes of the heard bars.
import { Midi } from "/static/vendor/cadenza-vendor.js";
import { problem } from "/static/common.js";
import { channelFor } from "./audio.js";
import { PPQ, state, tl } from "./state.js";

function buildMidi() {
  const midi = new Midi();
  const heard = tl.heard, tempoChanges = tl.tempoChanges;
  midi.header.setTempo(tempoChanges.length ? tempoChanges[0].tempo : 120);
  midi.header.tempos = [];
  let lastTempo = null;
  for (const t of tempoChanges) {
    if (t.tempo === lastTempo) continue;
    midi.header.tempos.push({ ticks: Math.round(t.beat * PPQ), bpm: t.tempo });
    lastTempo = t.tempo;
  }
  const ts = state.segments.length && state.segments[0].controls && state.segments[0].controls.time_signature;
  const m = /^(\d+)\/(\d+)$/.exec(ts || "4/4");
  midi.header.timeSignatures.push({ ticks: 0, timeSignature: [Number(m[1]), Number(m[2])] });
  midi.header.update();
  const tracks = new Map();
  for (const n of heard) {
    const ch = channelFor(n), program = Math.max(0, Math.min(127, Number(n.program) || 0));
    const key = `${ch}:${program}`;
    if (!tracks.has(key)) {
      const tr = midi.addTrack();
      tr.channel = ch; tr.instrument.number = program; tr.name = `voice ${n.voice ?? 0}`;
      tracks.set(key, tr);
    }
    tracks.get(key).addNote({
      midi: n.pitch,
      ticks: Math.max(0, Math.round(n.start * PPQ)),
      durationTicks: Math.max(1, Math.round(n.duration * PPQ)),
      velocity: Math.max(1, Math.min(127, n.velocity)) / 127,
    });
  }
  return midi.toArray();
}

export function downloadMidi() {
  const heard = tl.heard;
  if (!heard.length) { problem("nothing heard yet: press Start and listen a moment first"); return; }
  const bytes = buildMidi();
  state.lastDownload = { notes: heard.length, pitches: heard.map((n) => n.pitch), bytes: bytes.length };
  const blob = new Blob([bytes], { type: "audio/midi" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `cadenza-${new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-")}.mid`;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}
