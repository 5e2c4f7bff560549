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
// the constraint controls. The Key selector is the key the model is given, before and after notes. A suggestion shows in the roll as a preview (dashed green, the notes
// it would replace dimmed) until it is accepted, rejected or regenerated.
//
// Testing hook: window.studioState (read-only by convention).

import { startSynth, withToken } from "/static/common.js";

const $ = (id) => document.getElementById(id);

const LOW = 36, HIGH = 96;           // the on-screen piano: C2 .. C7
const KEYMAP = "awsedftgyhujkolp;";  // offsets 0..16 from the keyboard's base C
const NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"];
const KEYS = ["C", "G", "D", "A", "E", "B", "F#", "F", "Bb", "Eb", "Ab", "Db",
              "Am", "Em", "Bm", "F#m", "C#m", "Dm", "Gm", "Cm", "Fm"];
const PERSON_COLOR = "#7fb2ff", MODEL_COLOR = "#ffb35c", PREVIEW_COLOR = "#8ee08a";
const LOOKAHEAD_MS = 100;

const pitchName = (p) => `${NAMES[p % 12]}${Math.floor(p / 12) - 1}`;
const isBlack = (p) => [1, 3, 6, 8, 10].includes(p % 12);
const q16 = (beats) => Math.round(beats * 4) / 4;


// ---- state -------------------------------------------------------------------------------
const state = {
  session: null,          // the session id
  notes: [],              // the piece as the server has it: {id, pitch, start, duration, velocity, program, by}
  predictions: [],        // the five likeliest next notes: {pitch, name, probability}
  suggestion: null,       // the open suggestion (SuggestionOut) or null
  selection: null,        // {from_bar, to_bar} (bars from 0, to_bar excluded) or null
  canUndo: false, canRedo: false,
  barBeats: 4, tempo: 100, sessionTempo: 100, key: "C",
  recording: false, recordOrigin: null, recordStart: null,
  playing: false, playheadBeat: null,
  metronomeClicks: 0,
  busy: 0,                // requests in flight
  requests: 0,            // requests made
  played: 0,              // notes played (sounded) from any input
  sent: [],               // every note the page sent with POST .../notes, in order
  synth: "not loaded",
  audioState: null,
  midi: { available: false, inputs: [], outputs: [], sent: 0, received: 0 },
  keyboardBase: 60,
  rollLayout: null,       // {left, top, width, height, beatWidth, barBeats, bars} in CSS pixels of #roll
  rollStats: { person: 0, model: 0, preview: 0, replaced: 0 },
  credit: null,
  errors: [],
  bounds: null,           // {tempo, bars, voices, k: {min, max, integer}} from GET /api/studio/bounds
  ready: false,
  live: { on: false, status: "off", origin: null, tempo: null, events: [], person: [], model: [], late: 0,
          kept: null, offset: 0 },   // play along: every event received (with .received), the take so far
};
window.studioState = state;

let ctx = null, synth = null, synthLoading = null;
let queue = Promise.resolve();           // requests that change the piece run one after another
const held = new Map();                  // pitch -> {t, velocity, source}
let playTimer = null, playStartCtx = 0, playStartBeat = 0, playEndBeat = 0;
let metroTimer = null, metroNext = 0, metroT0 = 0;
let midiAccess = null;

// ---- requests ------------------------------------------------------------------------------
async function api(method, path, body) {
  state.busy++; state.requests++;
  try {
    const r = await fetch(withToken(path), {
      method, headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!r.ok) {
      let why = `${method} ${path.replace(/\?.*/, "")} answered ${r.status}`;
      try { const j = await r.json(); if (j.detail) why = typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail); } catch (e) { /* not JSON */ }
      const err = new Error(why); err.status = r.status; throw err;
    }
    const type = r.headers.get("content-type") || "";
    return type.includes("json") ? await r.json() : await r.blob();
  } finally {
    state.busy--;
  }
}

const S = (rest = "") => `/api/studio/sessions/${encodeURIComponent(state.session)}${rest}`;

function enqueue(fn) {
  const p = queue.then(fn).catch((e) => problem(e.message || String(e)));
  queue = p;
  return p;
}

function applyState(s) {
  state.notes = s.notes || [];
  state.canUndo = !!s.can_undo; state.canRedo = !!s.can_redo;
  state.barBeats = s.bar_beats || state.barBeats;
  state.sessionTempo = s.tempo || state.sessionTempo;
  if (state.suggestion && !(s.suggestions || []).some((g) => g.id === state.suggestion.id)) state.suggestion = null;
  if (s.predictions) setPredictions(s.predictions);
  render();
}

async function newSession() {
  if (liveSocket) { liveSocket.close(1000); liveSocket = null; state.live.on = false; state.live.status = "off"; }
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

async function refreshPredictions() {
  if (!state.session) return;
  setPredictions(await api("GET", S("/predictions")));
  render();
}

// ---- notes in ------------------------------------------------------------------------------
function pieceEnd() {
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

function noteDown(pitch, velocity = 90, t = performance.now(), source = "key") {
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

function noteUp(pitch, t = performance.now()) {
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

function allUp() { for (const p of [...held.keys()]) noteUp(p); }

// ---- audio ---------------------------------------------------------------------------------
function audio() {
  if (!ctx) {
    try { ctx = new AudioContext({ latencyHint: "interactive" }); } catch (e) { problem(`no audio: ${e.message}`); return null; }
  }
  if (ctx.state === "suspended") ctx.resume().catch(() => {});
  if (!synthLoading) loadSynth();
  return ctx;
}

function loadSynth() {
  synthLoading ??= startSynth(ctx, state, problem, "everything else works", (s) => { synth = s; });
  return synthLoading;
}

function sound(pitch, velocity) { audio(); if (synth) synth.noteOn(0, pitch, velocity); }
function unsound(pitch) { if (synth) synth.noteOff(0, pitch); }

// ---- metronome -------------------------------------------------------------------------------
function startMetronome(t0ms) {
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
  if (!audio() || !synth) return;
  const when = Math.max(ctx.currentTime, ctx.currentTime + (atMs - performance.now()) / 1000);
  const note = down ? 76 : 77;   // GM percussion: high / low wood block
  synth.noteOn(9, note, down ? 110 : 80, { time: when });
  synth.noteOff(9, note, { time: when + 0.08 });
}

function stopMetronome() { if (metroTimer) clearInterval(metroTimer); metroTimer = null; }

// ---- record --------------------------------------------------------------------------------
function toggleRecord() {
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

// ---- playback ------------------------------------------------------------------------------
function playedNotes() {
  // the piece as it would be with the open suggestion
  const g = state.suggestion;
  if (!g) return state.notes;
  const gone = new Set(g.replaces);
  return state.notes.filter((n) => !gone.has(n.id)).concat(g.notes.map((n) => ({ ...n, by: "model" })));
}

async function play() {
  const notes = playedNotes().slice().sort((a, b) => a.start - b.start);
  if (!notes.length) { problem("nothing to play yet: play some notes first"); return; }
  if (!audio()) return;
  await synthLoading;
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

function stopPlayback() {
  if (playTimer) clearInterval(playTimer);
  playTimer = null;
  if (state.playing && synth) synth.stopAll(true);
  if (!state.recording) stopMetronome();
  state.playing = false; state.playheadBeat = null;
  render();
}

// ---- suggestions ---------------------------------------------------------------------------
function constraints() {
  const c = {};
  if ($("scale").value) c.scale = $("scale").value;
  if ($("role").value) c.role = $("role").value;
  if ($("density").value) c.density = $("density").value;
  return c;
}

// ---- number boxes: the server's bounds, and a refusal in words (never a quietly changed number)
async function loadBounds() {
  state.bounds = await api("GET", "/api/studio/bounds");
  for (const el of document.querySelectorAll("input[data-bound]")) {
    const b = state.bounds[el.dataset.bound];
    el.min = String(b.min); el.max = String(b.max);
    if (b.integer) el.step = "1";
    el.title = `${el.dataset.label}: ${b.integer ? "a whole number" : "a number"} from ${b.min} to ${b.max}`;
  }
}

// Why the box's value is refused, or null when the server takes it.
function refusal(el) {
  const b = state.bounds && state.bounds[el.dataset.bound];
  if (!b) return null;
  const raw = el.value.trim(), x = Number(raw);
  const ok = raw !== "" && Number.isFinite(x) && (!b.integer || Number.isInteger(x)) && x >= b.min && x <= b.max;
  return ok ? null : `${el.dataset.label} must be ${b.integer ? "a whole number" : "a number"} from ${b.min} to ` +
    `${b.max}; ${raw === "" ? "the box is empty or not a number" : raw + " is not"}.`;
}

function checkBox(el) {
  const why = refusal(el);
  el.setAttribute("aria-invalid", why ? "true" : "false");
  if (why) problem(why, el.id);
  else if (problemFrom === el.id) clearProblem();
  return why;
}

// The box's number for a request, or null after saying why it is refused.
function boxValue(id) {
  const el = $(id);
  return checkBox(el) ? null : Number(el.value);
}

function ask(kind) {
  const body = { kind, constraints: constraints() };
  const field = { continue: "bars", answer: "bars", harmonize: "voices", infill: "k" }[kind];
  if (kind === "infill" && !state.selection) { problem("select bars first: drag across them in the roll"); return; }
  const value = boxValue(field);
  if (value === null) return;
  body[field] = value;
  let where = "";
  if (kind === "infill") {
    body.from_bar = state.selection.from_bar; body.to_bar = state.selection.to_bar;
    body.keep = $("infill-keep").value;
    where = infillWords(state.selection);
  } else if (kind === "harmonize") {
    if (state.selection) { body.from_bar = state.selection.from_bar; body.to_bar = state.selection.to_bar; }
    where = state.selection ? `voices under ${barsWords(state.selection)}` : "voices under the whole piece";
  }
  clearProblem();
  setStatus(`Asking the model to ${kind}…`);
  return enqueue(async () => {
    const g = await api("POST", S("/suggest"), body);
    state.suggestion = g;
    render();
    setStatus(`${g.kind}: ${g.notes.length} notes in ${(g.elapsed_s * 1000).toFixed(0)} ms` +
              (g.replaces.length ? `, replacing ${g.replaces.length}` : "") + (where ? ` (${where.replace(/\.$/, "")})` : "") +
              ". Accept, reject or regenerate.");
  });
}

// What infill will do with the selected bars, in words.
function barsWords(sel) {
  return sel.to_bar - sel.from_bar > 1 ? `bars ${sel.from_bar + 1}–${sel.to_bar}` : `bar ${sel.from_bar + 1}`;
}

function infillWords(sel) {
  const a = sel.from_bar * state.barBeats, b = sel.to_bar * state.barBeats;
  const inside = state.notes.filter((n) => n.start >= a - 1e-9 && n.start < b - 1e-9);
  const mine = inside.filter((n) => n.by === "person").length;
  const keep = $("infill-keep").value;
  const plural = (k) => `${k} note${k === 1 ? "" : "s"}`;
  if (!state.notes.length) return `the piece has no notes yet: infill writes ${barsWords(sel)} from nothing.`;
  if (!inside.length) return `${barsWords(sel)} ${sel.to_bar - sel.from_bar > 1 ? "are" : "is"} empty: infill writes ` +
    `${sel.to_bar - sel.from_bar > 1 ? "them" : "it"} from nothing, to fit the notes around.`;
  if (keep === "all") return `infill keeps all ${plural(inside.length)} in ${barsWords(sel)} and only adds notes ` +
    `around them${$("role").value ? ` (${$("role").value})` : ""}; nothing outside changes.`;
  if (keep === "person" && mine) {
    const theirs = inside.length - mine;
    return `infill keeps your ${plural(mine)} in ${barsWords(sel)} and writes around them` +
      (theirs ? `, replacing Cadenza's ${plural(theirs)} there` : "") + "; nothing outside changes.";
  }
  return `infill rewrites ${barsWords(sel)}: it would replace the ${plural(inside.length)} ` +
    `there${mine ? ` (${mine} of them yours)` : ""}; nothing outside changes.`;
}

function decide(action) {
  const g = state.suggestion;
  if (!g) return;
  return enqueue(async () => {
    const s = await api("POST", S(`/suggestions/${g.id}/${action}`));
    if (action === "regenerate") {
      const list = s.suggestions || [];
      state.suggestion = list.length ? list[list.length - 1] : null;
    } else {
      state.suggestion = null;
    }
    applyState(s);
    if (action === "accept") await refreshPredictions();
    setStatus(action === "accept" ? `Accepted ${g.notes.length} notes.` :
              action === "reject" ? "Rejected." : `Regenerated: ${state.suggestion ? state.suggestion.notes.length : 0} notes.`);
  });
}

function history(action) {
  return enqueue(async () => {
    try {
      applyState(await api("POST", S(`/${action}`)));
    } catch (e) {
      if (e.status === 409) { setStatus(`Nothing to ${action}.`); return; }
      throw e;
    }
    await refreshPredictions();
    setStatus(action === "undo" ? "Undone." : "Redone.");
  });
}

// ---- export ----------------------------------------------------------------------------------
function download(format) {
  return enqueue(async () => {
    const blob = await api("GET", S(`/export?format=${format}`));
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `cadenza-studio.${format === "midi" ? "mid" : "wav"}`;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    state.lastDownload = { format, bytes: blob.size };
  });
}

// ---- Web MIDI ------------------------------------------------------------------------------
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

async function setupMidi() {
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

function sendToMidiOut() {
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

// ---- play along ------------------------------------------------------------------------------
// WS .../live: the page sends its notes with their time stamps (performance.now() ms), the
// server sends each beat's accompaniment as soon as it is final, ahead of its time; the page
// plays it through the synthesizer (channel 2; count-in clicks on 10) and to the MIDI output.
let liveSocket = null;
const LIVE_LEAD_MS = 150;   // each beat is final this long before it: the socket and the page's own work fit in it

function liveBeat(t) {
  const L = state.live;
  return L.origin === null ? null : (t - L.origin) * (L.tempo || state.tempo) / 60000;
}

function liveStart() {
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

function liveStop() {
  if (liveSocket) liveSocket.send(JSON.stringify({ type: "stop" }));
  state.live.on = false;
  state.live.status = "stopped";
  allUp();
  render();
}

function liveKeep() {
  if (!liveSocket) return;
  state.live.on = false;
  allUp();
  liveSocket.send(JSON.stringify({ type: "keep" }));
  state.live.status = "keeping";
  render();
}

function liveNote(on, pitch, velocity, t) {
  const L = state.live;
  if (liveSocket && liveSocket.readyState === WebSocket.OPEN)
    liveSocket.send(JSON.stringify(on ? { type: "on", pitch, velocity, t } : { type: "off", pitch, t }));
  if (on) L.person.push({ pitch, t, end: null, velocity });
  else { const n = L.person.findLast((x) => x.pitch === pitch && x.end === null); if (n) n.end = t; }
}

function midiOutPort() {
  const id = $("midi-out").value;
  return midiAccess && id ? midiAccess.outputs.get(id) : null;
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

function liveNotes() {
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

// ---- the piano -----------------------------------------------------------------------------
const keyEls = new Map();
const keyEl = (p) => keyEls.get(p);

function buildPiano() {
  const el = $("piano");
  const whites = [];
  for (let p = LOW; p <= HIGH; p++) if (!isBlack(p)) whites.push(p);
  const w = 100 / whites.length;
  let wi = 0;
  for (let p = LOW; p <= HIGH; p++) {
    const k = document.createElement("div");
    k.className = `key ${isBlack(p) ? "black" : "white"}`;
    k.dataset.pitch = String(p);
    k.title = pitchName(p);
    if (isBlack(p)) {
      k.style.left = `${(wi - 0.3) * w}%`; k.style.width = `${0.6 * w}%`;
    } else {
      k.style.left = `${wi * w}%`; k.style.width = `${w}%`; wi++;
    }
    k.innerHTML = `<span class="prob"></span><span class="kb"></span><span class="name">${isBlack(p) ? "" : pitchName(p)}</span>`;
    el.appendChild(k);
    keyEls.set(p, k);
  }
  let pointerPitch = null;
  el.addEventListener("pointerdown", (ev) => {
    const k = ev.target.closest(".key");
    if (!k) return;
    ev.preventDefault();
    pointerPitch = Number(k.dataset.pitch);
    noteDown(pointerPitch, 90, ev.timeStamp || performance.now(), "mouse");
  });
  const up = (ev) => { if (pointerPitch !== null) { noteUp(pointerPitch, ev.timeStamp || performance.now()); pointerPitch = null; } };
  window.addEventListener("pointerup", up);
  window.addEventListener("pointercancel", up);
  labelKeys();
}

function labelKeys() {
  for (const [p, k] of keyEls) {
    const off = p - state.keyboardBase;
    k.querySelector(".kb").textContent = off >= 0 && off < KEYMAP.length ? KEYMAP[off] : "";
  }
  $("base-name").textContent = pitchName(state.keyboardBase);
}

function setPredictions(preds) {
  state.predictions = preds || [];
  const top = Math.max(1e-9, ...state.predictions.map((p) => p.probability));
  for (const k of keyEls.values()) { k.classList.remove("predicted"); k.style.removeProperty("--p"); }
  for (const p of state.predictions) {
    const k = keyEl(p.pitch);
    if (!k) continue;
    k.classList.add("predicted");
    k.style.setProperty("--p", (0.25 + 0.75 * p.probability / top).toFixed(3));
    k.querySelector(".prob").textContent = `${Math.round(p.probability * 100)}%`;
  }
  $("predictions-text").textContent = state.predictions.length
    ? "Next, the model thinks: " + state.predictions.map((p) => `${p.name} ${(p.probability * 100).toFixed(0)}%`).join(", ")
    : "";
}

function typing(ev) {
  const t = ev.target;
  return t && (t.tagName === "INPUT" && t.type !== "checkbox" && t.type !== "range" || t.tagName === "SELECT" || t.tagName === "TEXTAREA");
}

function setupKeyboard() {
  window.addEventListener("keydown", (ev) => {
    const k = ev.key.toLowerCase();
    if (typing(ev)) return;   // a number field keeps its own keys (and its own undo)
    if ((ev.ctrlKey || ev.metaKey) && k === "z") { ev.preventDefault(); history(ev.shiftKey ? "redo" : "undo"); return; }
    if ((ev.ctrlKey || ev.metaKey) && k === "y") { ev.preventDefault(); history("redo"); return; }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (k === "z" || k === "x") {
      state.keyboardBase = Math.min(HIGH - 12, Math.max(LOW, state.keyboardBase + (k === "z" ? -12 : 12)));
      labelKeys();
      return;
    }
    const off = KEYMAP.indexOf(k);
    if (off < 0) return;
    ev.preventDefault();
    if (ev.repeat) return;
    noteDown(state.keyboardBase + off, 90, ev.timeStamp || performance.now(), "keyboard");
  });
  window.addEventListener("keyup", (ev) => {
    const off = KEYMAP.indexOf(ev.key.toLowerCase());
    if (off >= 0) noteUp(state.keyboardBase + off, ev.timeStamp || performance.now());
  });
  window.addEventListener("blur", allUp);
}

// ---- the roll ------------------------------------------------------------------------------
function layout() {
  const c = $("roll");
  const w = c.clientWidth, h = c.clientHeight;
  const all = playedNotes().concat(state.notes, liveNotes());
  let end = 0;
  for (const n of all) end = Math.max(end, n.start + n.duration);
  if (state.recording) end = Math.max(end, state.recordOrigin + state.barBeats);
  const bars = Math.max(4, Math.ceil(end / state.barBeats - 1e-9) + 1);
  const left = 34;
  const beatWidth = (w - left - 4) / (bars * state.barBeats);
  let lo = 127, hi = 0;
  for (const n of all) { lo = Math.min(lo, n.pitch); hi = Math.max(hi, n.pitch); }
  if (lo > hi) { lo = 55; hi = 79; }
  const mid = (lo + hi) / 2, half = Math.max(12, (hi - lo) / 2 + 2);
  const lo2 = Math.floor(mid - half), hi2 = Math.ceil(mid + half);
  return { left, top: 16, width: w, height: h, beatWidth, barBeats: state.barBeats, bars,
           lo: lo2, hi: hi2, rowH: (h - 16) / (hi2 - lo2 + 1) };
}

function drawRoll() {
  const c = $("roll");
  const dpr = window.devicePixelRatio || 1;
  const cw = Math.round(c.clientWidth * dpr), ch = Math.round(c.clientHeight * dpr);
  if (cw && ch && (c.width !== cw || c.height !== ch)) { c.width = cw; c.height = ch; }
  const L = layout();
  state.rollLayout = L;
  const g = c.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.fillStyle = "#12151f"; g.fillRect(0, 0, L.width, L.height);
  const X = (beat) => L.left + beat * L.beatWidth;
  const rowH = L.rowH;
  const Y = (p) => L.height - (p - L.lo + 1) * rowH;
  // C rows and pitch labels
  g.font = "10px system-ui, sans-serif";
  for (let p = L.lo; p <= L.hi; p++) {
    if (isBlack(p)) { g.fillStyle = "#ffffff06"; g.fillRect(L.left, Y(p), L.width, rowH); }
    if (p % 12 === 0) { g.fillStyle = "#ffffff70"; g.fillText(pitchName(p), 3, Y(p) + rowH - 1); }
  }
  // selection
  if (state.selection) {
    const xa = X(state.selection.from_bar * L.barBeats), xb = X(state.selection.to_bar * L.barBeats);
    g.fillStyle = "#ffffff22"; g.fillRect(xa, 0, xb - xa, L.height);
    g.strokeStyle = "#e9d75a"; g.lineWidth = 1.5; g.strokeRect(xa + 0.75, 0.75, xb - xa - 1.5, L.height - 1.5);
  }
  // bar lines and numbers
  g.lineWidth = 1;
  for (let b = 0; b <= L.bars; b++) {
    const x = Math.round(X(b * L.barBeats)) + 0.5;
    g.strokeStyle = "#ffffff30"; g.beginPath(); g.moveTo(x, 0); g.lineTo(x, L.height); g.stroke();
    if (b < L.bars) { g.fillStyle = "#ffffff90"; g.fillText(String(b + 1), x + 4, 11); }
    g.strokeStyle = "#ffffff0c";
    for (let k = 1; k < L.barBeats && b < L.bars; k++) {
      const xx = Math.round(X(b * L.barBeats + k)) + 0.5;
      g.beginPath(); g.moveTo(xx, L.top); g.lineTo(xx, L.height); g.stroke();
    }
  }
  const stats = { person: 0, model: 0, preview: 0, replaced: 0 };
  const gone = new Set(state.suggestion ? state.suggestion.replaces : []);
  const rect = (n) => [X(n.start), Y(n.pitch), Math.max(2, n.duration * L.beatWidth - 1), Math.max(2, rowH - 1)];
  for (const n of state.notes) {
    g.globalAlpha = gone.has(n.id) ? 0.25 : 0.95;
    g.fillStyle = n.by === "model" ? MODEL_COLOR : PERSON_COLOR;
    g.fillRect(...rect(n));
    if (gone.has(n.id)) stats.replaced++; else stats[n.by === "model" ? "model" : "person"]++;
  }
  for (const n of liveNotes()) {      // the take, as it happens
    g.globalAlpha = 0.75;
    g.fillStyle = n.by === "model" ? MODEL_COLOR : PERSON_COLOR;
    g.fillRect(...rect(n));
    stats.live = (stats.live || 0) + 1;
  }
  g.globalAlpha = 1;
  if (state.suggestion) {
    g.setLineDash([4, 3]); g.lineWidth = 1.5; g.strokeStyle = PREVIEW_COLOR; g.fillStyle = PREVIEW_COLOR + "80";
    for (const n of state.suggestion.notes) {
      const [x, y, w, h] = rect(n);
      g.fillRect(x, y, w, h); g.strokeRect(x + 0.75, y + 0.75, Math.max(1, w - 1.5), Math.max(1, h - 1.5));
      stats.preview++;
    }
    g.setLineDash([]);
  }
  if (state.recording) {
    const beat = state.recordOrigin + (performance.now() - state.recordStart) * state.tempo / 60000;
    const x = X(beat);
    g.strokeStyle = "#ff5a5a"; g.lineWidth = 2; g.beginPath(); g.moveTo(x, 0); g.lineTo(x, L.height); g.stroke();
  } else if (state.playheadBeat !== null) {
    const x = X(state.playheadBeat);
    g.strokeStyle = "#ffffff"; g.lineWidth = 2; g.beginPath(); g.moveTo(x, 0); g.lineTo(x, L.height); g.stroke();
  }
  state.rollStats = stats;
}

function setupRoll() {
  const c = $("roll");
  let dragFrom = null;
  const barAt = (ev) => {
    const L = state.rollLayout || layout();
    const r = c.getBoundingClientRect();
    const beat = (ev.clientX - r.left - L.left) / L.beatWidth;
    return Math.min(L.bars - 1, Math.max(0, Math.floor(beat / L.barBeats)));
  };
  const select = (a, b) => {
    state.selection = { from_bar: Math.min(a, b), to_bar: Math.max(a, b) + 1 };
    render();
  };
  c.addEventListener("pointerdown", (ev) => {
    if (ev.button !== 0) return;
    dragFrom = barAt(ev);
    select(dragFrom, dragFrom);
    try { c.setPointerCapture(ev.pointerId); } catch (e) { /* fine */ }
  });
  c.addEventListener("pointermove", (ev) => { if (dragFrom !== null && ev.buttons) select(dragFrom, barAt(ev)); });
  for (const t of ["pointerup", "pointercancel"]) c.addEventListener(t, () => { dragFrom = null; });
  c.addEventListener("dblclick", () => { state.selection = null; render(); });
  c.addEventListener("contextmenu", (ev) => {   // right-click a note: delete it (undo brings it back)
    const n = noteAt(ev);
    if (!n) return;
    ev.preventDefault();
    enqueue(async () => {
      applyState(await api("POST", S("/delete"), { ids: [n.id] }));
      await refreshPredictions();
      setStatus(`Deleted ${pitchName(n.pitch)} at beat ${n.start + 1}.`);
    });
  });
}

function noteAt(ev) {
  const L = state.rollLayout, r = $("roll").getBoundingClientRect();
  if (!L) return null;
  const beat = (ev.clientX - r.left - L.left) / L.beatWidth;
  const pitch = L.lo - 1 + Math.ceil((L.height - (ev.clientY - r.top)) / L.rowH);
  return state.notes.find((n) => n.pitch === pitch && n.start <= beat && beat <= n.start + n.duration) || null;
}

// ---- words and buttons -----------------------------------------------------------------------
function setStatus(s) { $("status").textContent = s; }
let problemFrom = null;   // the number box whose refusal the error line shows, if it is one
function problem(s, from = null) { state.errors.push(s); problemFrom = from; const el = $("error"); el.textContent = s; el.hidden = false; }
function clearProblem() { problemFrom = null; const el = $("error"); el.hidden = true; el.textContent = ""; }

function render() {
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
  const L = state.live, liveOpen = !!liveSocket;
  $("live").classList.toggle("on", L.on);
  $("live").textContent = L.on ? "■ Stop playing along" : "♫ Play along";
  $("keep").disabled = !liveOpen || !(L.person.length || L.model.length) || L.status === "keeping";
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
    state.audioState = ctx ? ctx.state : null;
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
