// The /listen page: plays the endless stream of WS /api/stream with a SoundFont synthesizer.
//
// The page owns the clock (audio.js). Each `notes` message is one bar on a continuous beat
// timeline (stream.js); a bar gets its AudioContext time when the scheduler reaches it: the end
// of the bar before it, or a little after now when it came late (the music waits instead of
// skipping notes). Notes go to the synthesizer LOOKAHEAD seconds ahead, so a `cut` (after a skip)
// can still drop what was not yet handed over. The playhead (in beats) goes back to the server
// every 250 ms, which keeps its lead between its low and high marks.
//
// The status (words.js) names what plays and who chose each control; the mood pad (pad.js) is
// the stream's own grid of valence and energy levels (the ready message's `pad`). With the tempo
// on auto, the slider's handle follows the tempo playing. `?seed=N` in the address seeds the
// stream (the same seed, the same choices).
//
// Testing hooks: window.cadenza.debug.state and .notes() (state.js; read-only by convention).

import { $, withToken } from "/static/common.js";
import { audio } from "./audio.js";
import { downloadMidi } from "./midi.js";
import { drawPad, setupPad } from "./pad.js";
import { drawRoll } from "./roll.js";
import { state } from "./state.js";
import { connect, send } from "./stream.js";
import { start, stop } from "./transport.js";
import { refreshPreferences, setTempoAuto, updateStatus } from "./words.js";

function setupControls() {
  $("start").addEventListener("click", () => (state.playing ? stop() : start()));
  $("like").addEventListener("click", () => send({ type: "like" }));
  $("skip").addEventListener("click", () => send({ type: "skip" }));
  $("download").addEventListener("click", downloadMidi);
  $("style").addEventListener("change", () => {   // "any" frees the style again; before Start: goes with start
    if (state.playing) send({ type: "control", style: $("style").value || null });
  });
  const tempo = $("tempo");
  tempo.addEventListener("input", () => { setTempoAuto(false); $("tempo-value").textContent = `${tempo.value} bpm`; });
  tempo.addEventListener("change", () => { if (state.playing) send({ type: "control", tempo: Number(tempo.value) }); });
  $("tempo-auto").addEventListener("click", () => {
    setTempoAuto(true);
    if (state.playing) send({ type: "control", tempo: null });
  });
  setupPad();
  $("home-link").href = withToken("/");
}

function frame() {
  try {
    state.audioState = audio.ctx ? audio.ctx.state : null;
    updateStatus();
    drawRoll();
    drawPad();
  } finally {
    requestAnimationFrame(frame);
  }
}

setupControls();
drawPad();
requestAnimationFrame(frame);
connect().catch(() => {});
refreshPreferences();
