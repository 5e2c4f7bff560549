// Start and Stop on the /listen page: a new run's timeline, the scheduler and the playhead reports.
import { $, clearProblem, problem, setStatus } from "/static/common.js";
import { audio, loadSynth, playheadBeat, schedule } from "./audio.js";
import { PLAYHEAD_MS, SEED, TICK_MS, pad, round, state, tl } from "./state.js";
import { connect, disconnect, send } from "./stream.js";

let timers = [];

export async function start() {
  clearProblem();
  $("start").disabled = true;
  try {
    if (!audio.ctx) {
      try { audio.ctx = new AudioContext({ latencyHint: "playback" }); } catch (e) { problem(`no audio: ${e.message}`); }
    }
    if (audio.ctx) { await audio.ctx.resume().catch(() => {}); loadSynth(); }
    await connect();
    resetTimeline();
    const m = { type: "start" };
    if ($("style").value) m.style = $("style").value;
    if (pad.touched) { m.valence = round(pad.valence); m.energy = round(pad.energy); }
    if (!state.tempoAuto) m.tempo = Number($("tempo").value);
    if (SEED !== null) m.seed = SEED;
    state.playing = true;
    send(m);
    timers.push(setInterval(schedule, TICK_MS));
    timers.push(setInterval(() => {
      if (state.playing) send({ type: "playhead", beat: round(playheadBeat(), 3) });
    }, PLAYHEAD_MS));
    $("start").textContent = "Stop";
    $("like").disabled = $("skip").disabled = false;
  } catch (e) {
    problem(`cannot start: ${e.message || e}`);
  } finally {
    $("start").disabled = false;
  }
}

export function stopPlayback() {
  state.playing = false;
  for (const t of timers) clearInterval(t);
  timers = [];
  if (audio.synth) audio.synth.stopAll(true);
  $("start").textContent = "Start";
  $("like").disabled = $("skip").disabled = true;
}

export function stop() {
  send({ type: "stop" });
  stopPlayback();
  disconnect();
  setStatus("Stopped. Press Start for a new piece.");
}

function resetTimeline() {
  Object.assign(tl, { bars: [], nextBar: 0, segmentsByBeat: [], heard: [], tempoChanges: [],
                      channelProgram: new Map(), maxSeq: -1 });
  state.notesReceived = 0; state.notesPlayed = 0; state.segments = []; state.lastSegment = null;
  state.currentSegment = null; state.cuts = []; state.lastCut = null; state.notesPastCut = 0; state.playheadBeat = 0;
  $("download").disabled = true;
}
