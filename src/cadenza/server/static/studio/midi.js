// Web MIDI on the /studio page: every input plays like the piano; the piece (with the open
// suggestion) can be sent to an output, and play along sends Cadenza's notes there too.
import { $, problem, setStatus } from "/static/common.js";
import { playedNotes } from "./audio.js";
import { noteDown, noteUp } from "./input.js";
import { render } from "./main.js";
import { state } from "./state.js";

let midiAccess = null;

function onMidiMessage(ev) {
  const d = ev.data;
  if (!d || d.length < 3) return;
  const kind = d[0] & 0xf0;
  const t = ev.timeStamp || performance.now();
  if (kind === 0x90 && d[2] > 0) { state.midi.received++; noteDown(d[1], d[2], t, "midi"); }
  else if (kind === 0x80 || (kind === 0x90 && d[2] === 0)) noteUp(d[1], t);
}

function refreshMidiPorts() {
  if (!midiAccess) return;
  const inputs = [], outputs = [];
  midiAccess.inputs.forEach((port) => { port.onmidimessage = onMidiMessage; inputs.push(port.name || port.id); });
  const sel = $("midi-out"), chosen = sel.value;
  sel.length = 1;
  midiAccess.outputs.forEach((port) => {
    outputs.push(port.name || port.id);
    sel.add(new Option(port.name || port.id, port.id, false, port.id === chosen));
  });
  if (!sel.value && sel.length > 1) sel.selectedIndex = 1;
  state.midi.inputs = inputs; state.midi.outputs = outputs;
  $("midi-status").textContent = `Web MIDI: ${inputs.length} input${inputs.length === 1 ? "" : "s"}` +
    (inputs.length ? ` (${inputs.join(", ")})` : "");
  render();
}

export async function setupMidi() {
  if (!navigator.requestMIDIAccess) { $("midi-status").textContent = "Web MIDI: not in this browser"; return; }
  try {
    midiAccess = await navigator.requestMIDIAccess({ sysex: false });
    state.midi.available = true;
    midiAccess.onstatechange = refreshMidiPorts;
    refreshMidiPorts();
  } catch (e) {
    $("midi-status").textContent = `Web MIDI: refused (${e.message || e.name || e})`;
  }
}

export function sendToMidiOut() {
  const id = $("midi-out").value;
  const port = midiAccess && id ? midiAccess.outputs.get(id) : null;
  if (!port) { problem("choose a MIDI output first"); return; }
  const notes = playedNotes().slice().sort((a, b) => a.start - b.start);
  if (!notes.length) { problem("nothing to send yet"); return; }
  const msPerBeat = 60000 / state.tempo, t0 = performance.now() + 100;
  for (const n of notes) {
    const ch = n.by === "model" ? 1 : 0;
    port.send([0x90 | ch, n.pitch, Math.max(1, Math.min(127, n.velocity || 80))], t0 + n.start * msPerBeat);
    port.send([0x80 | ch, n.pitch, 0], t0 + (n.start + n.duration) * msPerBeat - 1);
    state.midi.sent++;
  }
  setStatus(`Sent ${notes.length} notes to ${port.name || port.id}.`);
}

export function midiOutPort() {
  const id = $("midi-out").value;
  return midiAccess && id ? midiAccess.outputs.get(id) : null;
}
