// The /listen page: plays the endless stream of WS /api/stream with a SoundFont synthesizer.
//
// The page owns the clock. Each `notes` message is one bar on a continuous beat timeline; a
// bar gets its AudioContext time ("anchor") when the scheduler reaches it: the end of the bar
// before it, or a little after now when it came late (the music waits instead of skipping
// notes). Notes go to the synthesizer LOOKAHEAD seconds ahead, so a `cut` (after a skip) can
// still drop what was not yet handed over. The playhead (in beats) goes back to the server
// every 250 ms, which keeps its lead between its low and high marks.
//
// The status names what plays and who chose each control (you, your likes, the model); bars
// are counted from 1 on the page (the protocol's `bar` counts from 0). The mood pad is the
// stream's own grid of valence and energy levels, each cell named as the status names it (the
// ready message's `pad`). With the tempo on auto, the slider's handle follows the tempo playing.
// `?seed=N` in the address seeds the stream (the same seed, the same choices).
//
// Testing hook: window.cadenzaState (read-only by convention).

import { Midi } from "/static/vendor/cadenza-vendor.js";
import { startSynth, withToken } from "/static/common.js";

const LOOKAHEAD = 0.2;        // seconds of notes handed to the synthesizer ahead of time (under the
                              // server's 0.5 s cut margin, so a cut finds them not yet handed over)
const LOOKAHEAD_HIDDEN = 3.0; // ... while the tab is hidden (the browser then slows timers down)
const TICK_MS = 50;           // scheduler period
const PLAYHEAD_MS = 250;      // playhead report period
const PAD_SEND_MS = 150;      // at most one mood control message per this
const START_DELAY = 0.25;     // seconds between the first bar arriving and it sounding
const PPQ = 480;              // MIDI download resolution

const $ = (id) => document.getElementById(id);


function listenerId() {
  const KEY = "cadenza.listener";
  let id = null;
  try { id = localStorage.getItem(KEY); } catch (e) { /* storage off: a fresh id per visit */ }
  if (!id || !/^[A-Za-z0-9_-]{8,64}$/.test(id)) {
    const b = crypto.getRandomValues(new Uint8Array(12));
    id = "l-" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    try { localStorage.setItem(KEY, id); } catch (e) { /* ignore */ }
  }
  return id;
}

const LISTENER = listenerId();
const SEED = (() => { const v = new URLSearchParams(location.search).get("seed"); return v && /^\d{1,15}$/.test(v) ? Number(v) : null; })();
const CHOOSER_WORDS = { listener: "you", preferences: "your likes", model: "the model" };

// ---- state -------------------------------------------------------------------------------
const state = {
  listener: LISTENER,
  connected: false,      // the socket is open and the server said ready
  playing: false,        // start was sent and stop not yet
  ready: null,           // the server's ready message
  notesReceived: 0,
  notesPlayed: 0,        // handed to the synthesizer (what was heard)
  segments: [],          // every segment message, in order
  lastSegment: null,
  currentSegment: null,  // the segment under the playhead
  cuts: [],              // beats of every cut
  acks: [],              // liked / skipped acknowledgements
  errors: [],            // server error reasons and page problems
  playheadBeat: 0,
  synth: "not loaded",   // not loaded | loading | ready | failed: <why>
  audioState: null,
  rollNotesDrawn: 0,
  padSends: 0,
  preferences: null,
  lastDownload: null,   // {notes, pitches, bytes} of the last MIDI download
  notesPastCut: 0,      // notes from a cut's beat on that had already gone to the synthesizer
  lastCut: null,        // {beat, seqBefore}: the last cut and the highest note seq received before it
  pad: null,            // the mood pad: {valence, energy, touched}
  tempoAuto: true,      // the tempo is left to the likes or the model (the handle follows it)
  statusChoosers: null, // who chose what the status shows: {control: "you" | "your likes" | "the model"}
};
window.cadenzaState = state;
window.cadenzaNotes = () => bars.flatMap((b) => b.notes);   // the timeline as it stands (after cuts)

let ws = null;
let wsReady = null;       // promise of the ready message for the current socket
let ctx = null;           // AudioContext
let synth = null;
let synthLoading = null;
let bars = [];            // {bar, start, end, tempo, time|null, notes:[...], next}
let nextBar = 0;          // index of the first bar not fully handed to the synthesizer
let segmentsByBeat = [];  // segments of this run, sorted by beat
let channelProgram = new Map();
let heard = [];           // notes handed to the synthesizer
let tempoChanges = [];    // {beat, tempo} of heard bars, for the MIDI file
let timers = [];
const pad = { valence: 0.5, energy: 0.5, touched: false };
let prefsOff = null;      // why the server keeps no preferences, from its ready message
let maxSeq = -1;          // the highest note sequence number received

state.pad = pad;

// ---- clock -------------------------------------------------------------------------------
const now = () => (ctx ? ctx.currentTime : performance.now() / 1000);

function beatsPerBar(ts) {
  const m = /^(\d+)\/(\d+)$/.exec(ts || "");
  return m ? (Number(m[1]) * 4) / Number(m[2]) : 4;
}

function timeOf(bar, beat) { return bar.time + ((beat - bar.start) * 60) / bar.tempo; }

function playheadBeat() {
  const t = now();
  let b = null;
  for (let i = Math.min(nextBar, bars.length - 1); i >= 0; i--) {
    if (bars[i].time !== null && bars[i].time <= t) { b = bars[i]; break; }
  }
  if (!b) return bars.length ? bars[0].start : 0;
  return Math.min(b.end, b.start + ((t - b.time) * b.tempo) / 60);
}

function anchor(i) {
  const bar = bars[i];
  if (bar.time !== null) return bar.time;
  const prev = i > 0 ? bars[i - 1] : null;
  const due = prev && prev.time !== null ? timeOf(prev, prev.end) : now() + START_DELAY;
  bar.time = Math.max(due, now() + 0.05);   // late: wait, never skip
  tempoChanges.push({ beat: bar.start, tempo: bar.tempo });
  return bar.time;
}

function channelFor(note) {
  // drums on channel 9 (GM percussion); voice 0.. -> the other channels
  if (note.drum) return 9;
  const v = Math.max(0, Number(note.voice) || 0) % 15;
  return v >= 9 ? v + 1 : v;
}

function schedule() {
  if (!state.playing || (synthLoading && state.synth === "loading")) return;
  const horizon = now() + (document.hidden ? LOOKAHEAD_HIDDEN : LOOKAHEAD);
  while (nextBar < bars.length) {
    const bar = bars[nextBar];
    if (anchor(nextBar) > horizon) break;
    while (bar.next < bar.notes.length) {
      const n = bar.notes[bar.next];
      const t = timeOf(bar, n.start);
      if (t > horizon) break;
      play(n, t, (n.duration * 60) / bar.tempo);
      bar.next++;
    }
    if (bar.next < bar.notes.length) break;
    nextBar++;
  }
}

function play(n, t, seconds) {
  heard.push(n);
  state.notesPlayed++;
  if (!synth) return;
  const ch = channelFor(n);
  const program = Math.max(0, Math.min(127, Number(n.program) || 0));
  const when = Math.max(t, now());
  if (channelProgram.get(ch) !== program) {
    synth.programChange(ch, program, { time: when });
    channelProgram.set(ch, program);
  }
  const vel = Math.max(1, Math.min(127, Math.round(n.velocity)));
  synth.noteOn(ch, n.pitch, vel, { time: when });
  synth.noteOff(ch, n.pitch, { time: when + Math.max(0.03, seconds - 0.005) });
}

// ---- messages from the server --------------------------------------------------------------
function onSegment(m) {
  state.segments.push(m);
  state.lastSegment = m;
  segmentsByBeat.push(m);
}

function onNotes(m) {
  const notes = (m.notes || []).slice().sort((a, b) => a.start - b.start);
  state.notesReceived += notes.length;
  for (const n of notes) if (n.seq > maxSeq) maxSeq = n.seq;
  const seg = state.lastSegment;
  const last = bars.length ? bars[bars.length - 1] : null;
  const end = Number(m.end_beat);
  const ts = m.time_signature || (seg && seg.controls && seg.controls.time_signature);
  let start = Number.isFinite(m.start_beat) ? Number(m.start_beat) : (last ? last.end : end - beatsPerBar(ts));
  if (notes.length && notes[0].start < start) start = notes[0].start;
  const tempo = Number(m.tempo) > 0 ? Number(m.tempo) : (last ? last.tempo : 120);
  bars.push({ bar: m.bar, start, end: Math.max(end, start), tempo, time: null, notes, next: 0 });
  $("download").disabled = false;
}

function onCut(m) {
  const x = Number(m.beat);
  state.cuts.push(x);
  state.lastCut = { beat: x, seqBefore: maxSeq };
  // Drop every note from beat x on that is not yet handed to the synthesizer; a bar from x
  // on keeps what it already handed over but no length, so the new music from x follows
  // straight on and the page's beats stay the server's.
  for (let i = bars.length - 1; i >= 0 && bars[i].end > x; i--) {
    const bar = bars[i];
    if (bar.start >= x && bar.next === 0 && i >= nextBar) { bars.splice(i, 1); continue; }
    state.notesPastCut += bar.notes.filter((n, j) => j < bar.next && n.start >= x).length;
    bar.notes = bar.notes.filter((n, j) => j < bar.next || n.start < x);
    bar.next = Math.min(bar.next, bar.notes.length);
    bar.end = Math.max(x, bar.start);
  }
  nextBar = Math.min(nextBar, bars.length);
  segmentsByBeat = segmentsByBeat.filter((s) => s.beat < x);
}

function onMessage(ev) {
  let m;
  try { m = JSON.parse(ev.data); } catch (e) { return problem("the server sent something that is not JSON"); }
  switch (m.type) {
    case "ready": onReady(m); break;
    case "segment": onSegment(m); break;
    case "notes": onNotes(m); break;
    case "cut": onCut(m); break;
    case "liked": case "skipped": state.acks.push(m); refreshPreferences(); break;
    case "error": problem(`server: ${m.reason || "error"}`); break;
    default: break;
  }
}

function onReady(m) {
  state.ready = m;
  state.connected = true;
  const sel = $("style");
  const chosen = sel.value;
  sel.length = 1;
  for (const s of m.styles || []) sel.add(new Option(s, s, false, s === chosen));
  const t = m.bounds && m.bounds.tempo;
  if (t) { $("tempo").min = String(t.min); $("tempo").max = String(t.max); }
  if (m.pad) {
    const where = Object.entries(m.pad.moods).map(([name, [v, e]]) => `${name} at valence ${v + 1} and energy ${e + 1} of ${m.pad.levels}`);
    $("pad").setAttribute("aria-label", `mood pad, valence left to right and energy bottom to top: ${where.join("; ")}`);
  }
  drawPad();
  prefsOff = typeof m.preferences === "string" && m.preferences !== "on" ? m.preferences : null;
  if (prefsOff) $("prefs").textContent = `Preferences are ${prefsOff.replace(/^off: /, "off (")}${prefsOff.startsWith("off: ") ? ")" : ""}; the music still plays.`;
}

// ---- socket --------------------------------------------------------------------------------
function connect() {
  if (ws && ws.readyState <= 1 && wsReady) return wsReady;
  const url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}` +
    withToken("/api/stream", { listener: LISTENER });
  const sock = new WebSocket(url);
  ws = sock;
  wsReady = new Promise((resolve, reject) => {
    sock.addEventListener("message", (ev) => {
      onMessage(ev);
      if (state.ready && sock === ws) resolve(sock);
    });
    sock.addEventListener("close", (ev) => {
      if (sock !== ws) return;
      state.connected = false;
      ws = null; wsReady = null;
      if (state.playing) {
        stopPlayback();
        problem(`the stream closed${ev.reason ? ": " + ev.reason : ""} (code ${ev.code}); press Start to go on`);
      }
      reject(new Error(ev.reason || `closed (${ev.code})`));
    });
    sock.addEventListener("error", () => problem("cannot reach the stream (is cadenza serve running?)"));
  });
  wsReady.catch(() => {});
  return wsReady;
}

function send(m) {
  if (ws && ws.readyState === WebSocket.OPEN) { ws.send(JSON.stringify(m)); return true; }
  return false;
}

// ---- audio -------------------------------------------------------------------------------
function loadSynth() {
  synthLoading ??= startSynth(ctx, state, problem, "the roll still runs", (s) => { synth = s; });
  return synthLoading;
}

// ---- transport -------------------------------------------------------------------------------
async function start() {
  clearProblem();
  $("start").disabled = true;
  try {
    if (!ctx) {
      try { ctx = new AudioContext({ latencyHint: "playback" }); } catch (e) { problem(`no audio: ${e.message}`); }
    }
    if (ctx) { await ctx.resume().catch(() => {}); loadSynth(); }
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

function stopPlayback() {
  state.playing = false;
  for (const t of timers) clearInterval(t);
  timers = [];
  if (synth) synth.stopAll(true);
  $("start").textContent = "Start";
  $("like").disabled = $("skip").disabled = true;
}

function stop() {
  send({ type: "stop" });
  stopPlayback();
  if (ws) { const s = ws; ws = null; wsReady = null; state.connected = false; s.close(1000, "stopped"); }
  setStatus("Stopped. Press Start for a new piece.");
}

function resetTimeline() {
  bars = []; nextBar = 0; segmentsByBeat = []; heard = []; tempoChanges = [];
  channelProgram = new Map();
  state.notesReceived = 0; state.notesPlayed = 0; state.segments = []; state.lastSegment = null;
  state.currentSegment = null; state.cuts = []; state.lastCut = null; state.notesPastCut = 0; state.playheadBeat = 0; maxSeq = -1;
  $("download").disabled = true;
}

// ---- controls ------------------------------------------------------------------------------
const round = (x, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

let padTimer = null, padLast = 0;
function sendPad() {
  padTimer = null;
  padLast = performance.now();
  if (state.playing && send({ type: "control", valence: round(pad.valence), energy: round(pad.energy) })) state.padSends++;
}
function padChanged() {
  pad.touched = true;
  drawPad();
  if (padTimer) return;
  const wait = Math.max(0, PAD_SEND_MS - (performance.now() - padLast));
  padTimer = setTimeout(sendPad, wait);
}

function padFromEvent(ev) {
  const c = $("pad"), r = c.getBoundingClientRect();
  pad.valence = Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width));
  pad.energy = Math.min(1, Math.max(0, 1 - (ev.clientY - r.top) / r.height));
  padChanged();
}

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
  const c = $("pad");
  let dragging = false;
  c.addEventListener("pointerdown", (ev) => {
    dragging = true;
    padFromEvent(ev);
    try { c.setPointerCapture(ev.pointerId); } catch (e) { /* drag then ends at the pad's edge */ }
  });
  c.addEventListener("pointermove", (ev) => { if (dragging && ev.buttons) padFromEvent(ev); });
  for (const t of ["pointerup", "pointercancel"]) c.addEventListener(t, () => { dragging = false; });
  c.addEventListener("keydown", (ev) => {   // arrows move the pad too
    const step = ev.shiftKey ? 0.2 : 0.05;
    const d = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] }[ev.key];
    if (!d) return;
    ev.preventDefault();
    const seg = state.currentSegment && state.currentSegment.controls;
    if (!pad.touched && seg && seg.valence != null) { pad.valence = seg.valence; pad.energy = seg.energy; }   // from where the music is
    pad.valence = Math.min(1, Math.max(0, pad.valence + d[0]));
    pad.energy = Math.min(1, Math.max(0, pad.energy + d[1]));
    padChanged();
  });
  const home = $("home-link");
  home.href = withToken("/");
}

// ---- words ---------------------------------------------------------------------------------
function keyWords(k) {
  if (!k) return null;
  const m = /^([A-G][#b]?)(m?)$/.exec(k);
  return m ? `${m[1]} ${m[2] ? "minor" : "major"}` : k;
}

function chooserOf(seg, ...controls) {
  const by = seg.chosen_by || {};
  const words = [...new Set(controls.map((k) => CHOOSER_WORDS[by[k]] || "the model"))];
  return words.join(" and ");
}

// "bar 5 · fiddle (your likes) · happy (you) · 108 bpm (your likes) · D major (the model)"
function segmentWords(seg, beat) {
  const c = seg.controls || {};
  const bar = currentBarNumber(beat);
  const parts = [`bar ${(bar ?? seg.bar) + 1}`];
  const who = {};
  const add = (text, name, ...controls) => {
    if (!text) return;
    who[name] = chooserOf(seg, ...controls);
    parts.push(`${text} (${who[name]})`);
  };
  add(c.style, "style", "style");
  add(c.mood, "mood", "valence", "energy");
  add(c.tempo && `${Math.round(c.tempo)} bpm`, "tempo", "tempo");
  add(keyWords(c.key), "key", "key");
  if (c.time_signature && c.time_signature !== "4/4") add(c.time_signature, "metre", "time_signature");
  state.statusChoosers = who;
  return parts.join(" · ");
}

function currentBarNumber(beat) {
  for (let i = Math.min(nextBar, bars.length - 1); i >= 0; i--) {
    if (bars[i].start <= beat + 1e-6) return bars[i].bar;
  }
  return null;
}

const listWords = (xs) => (xs.length > 1 ? `${xs.slice(0, -1).join(", ")} and ${xs[xs.length - 1]}` : xs[0] || "");

// The tempo on auto: the handle and the words follow the tempo playing.
function showTempo(t) {
  const out = $("tempo-value"), el = $("tempo");
  const words = t ? `auto · ${Math.round(t)} bpm` : "auto";
  if (out.textContent !== words) out.textContent = words;
  if (t && Number(el.value) !== Math.round(t)) el.value = String(Math.round(t));
}

function setTempoAuto(auto) {
  state.tempoAuto = auto;
  $("tempo-auto").hidden = auto;
  $("tempo").classList.toggle("auto", auto);
  if (auto) showTempo(state.currentSegment && state.currentSegment.controls && Number(state.currentSegment.controls.tempo));
}

function setStatus(s) { const el = $("status"); if (el.textContent !== s) el.textContent = s; }
function problem(s) { state.errors.push(s); const el = $("error"); el.textContent = s; el.hidden = false; }
function clearProblem() { const el = $("error"); el.hidden = true; el.textContent = ""; }

function updateStatus() {
  if (!state.playing) return;
  const beat = playheadBeat();
  let seg = null;
  for (const s of segmentsByBeat) if (s.beat <= beat + 1e-6) seg = s;
  if (!seg && segmentsByBeat.length && state.notesPlayed === 0) {
    setStatus(state.synth === "loading" ? "Loading the SoundFont…" : "Starting…");
    return;
  }
  state.currentSegment = seg;
  if (state.tempoAuto) showTempo(seg && seg.controls && Number(seg.controls.tempo));
  if (seg) setStatus(segmentWords(seg, beat));
  else setStatus(state.synth === "loading" ? "Loading the SoundFont…" : "Waiting for the first notes…");
}

async function refreshPreferences() {
  try {
    const r = await fetch(withToken(`/api/listener/${encodeURIComponent(LISTENER)}`));
    if (!r.ok || prefsOff) return;
    const p = await r.json();
    state.preferences = p;
    const n = (p.likes || 0) + (p.skips || 0);
    let s;
    if (!n) s = "What you like: nothing learned yet (like or skip to teach it).";
    else {
      const bits = [];
      if (p.more && p.more.length) bits.push(`more: ${p.more.join(", ")}`);
      if (p.less && p.less.length) bits.push(`less: ${p.less.join(", ")}`);
      const steers = [...new Set((p.steers || []).map((k) => (k === "valence" || k === "energy" ? "mood" : k)))];
      s = `What you like (${p.likes} like${p.likes === 1 ? "" : "s"}, ${p.skips} skip${p.skips === 1 ? "" : "s"}): ` +
        (bits.join("; ") || "no clear taste yet (likes and skips cancel out)") + ". " +
        (steers.length ? `Your likes choose the ${listWords(steers)} you leave free.` : "Your likes choose nothing yet.");
    }
    $("prefs").textContent = s;
  } catch (e) { /* the page works without it */ }
}

// ---- drawing -------------------------------------------------------------------------------
const VOICE_COLORS = ["#7fb2ff", "#ffb35c", "#8ee08a", "#f27ea9", "#c9a0ff", "#5fd6d0"];

const MOOD_COLORS = { sad: "#3b4a7a", tense: "#7a3f6a", calm: "#5f8fa8", happy: "#e0a84a", energetic: "#d0703a" };

// The mood a pad position stands for: the name the status gives a segment at those levels.
function padMood(valence, energy) {
  const p = state.ready && state.ready.pad;
  if (!p) return null;
  const lv = (x) => Math.min(p.levels - 1, Math.max(0, Math.floor(x * p.levels)));
  return p.grid[lv(valence)][lv(energy)];
}

// The stream's grid of valence (left to right) and energy (bottom to top) levels, each cell in
// the colour of the mood the status would name, with each mood's name on its own cell. The ring
// is where the music is; the dot is where you put the pad (shown once you touch it).
function drawPad() {
  const c = $("pad"), g = c.getContext("2d"), w = c.width, h = c.height;
  const p = state.ready && state.ready.pad;
  g.fillStyle = "#2a3047"; g.fillRect(0, 0, w, h);
  state.padLabels = [];
  if (p) {
    const n = p.levels, cw = w / n, ch = h / n;
    for (let v = 0; v < n; v++) {
      for (let e = 0; e < n; e++) {
        g.fillStyle = MOOD_COLORS[p.grid[v][e]] || "#6a8fb0";
        g.fillRect(v * cw, h - (e + 1) * ch, cw, ch);
      }
    }
    g.strokeStyle = "#ffffff30"; g.lineWidth = 1;
    for (let v = 1; v < n; v++) {
      for (let e = 0; e < n; e++) {   // a line only between cells of different moods
        if (p.grid[v][e] !== p.grid[v - 1][e]) { g.beginPath(); g.moveTo(v * cw, h - e * ch); g.lineTo(v * cw, h - (e + 1) * ch); g.stroke(); }
        if (p.grid[e][v] !== p.grid[e][v - 1]) { g.beginPath(); g.moveTo(e * cw, h - v * ch); g.lineTo((e + 1) * cw, h - v * ch); g.stroke(); }
      }
    }
    g.font = "600 12px system-ui, sans-serif"; g.textAlign = "center"; g.textBaseline = "middle";
    for (const [name, [v, e]] of Object.entries(p.moods)) {
      const half = g.measureText(name).width / 2 + 3;   // the word stays inside the pad
      const x = Math.min(w - half, Math.max(half, (v + 0.5) * cw)), y = h - (e + 0.5) * ch;
      g.fillStyle = "#000000a0"; g.fillText(name, x + 1, y + 1);
      g.fillStyle = "#ffffff"; g.fillText(name, x, y);
      state.padLabels.push({ name, valence: (v + 0.5) / n, energy: (e + 0.5) / n });
    }
    g.textAlign = "left"; g.textBaseline = "alphabetic";
  }
  const seg = state.currentSegment;
  if (seg && seg.controls && seg.controls.valence != null && seg.controls.energy != null) {
    g.strokeStyle = "#ffffff"; g.lineWidth = 2.5;
    g.beginPath(); g.arc(seg.controls.valence * w, (1 - seg.controls.energy) * h, 11, 0, 2 * Math.PI); g.stroke();
  }
  if (pad.touched) {
    g.fillStyle = "#ffffff"; g.strokeStyle = "#1d2230"; g.lineWidth = 1.5;
    g.beginPath(); g.arc(pad.valence * w, (1 - pad.energy) * h, 6, 0, 2 * Math.PI); g.fill(); g.stroke();
  }
}

function drawRoll() {
  const c = $("roll");
  const dpr = window.devicePixelRatio || 1;
  const cw = Math.round(c.clientWidth * dpr), ch = Math.round(c.clientHeight * dpr);
  if (cw && ch && (c.width !== cw || c.height !== ch)) { c.width = cw; c.height = ch; }
  const g = c.getContext("2d"), w = c.width, h = c.height;
  g.fillStyle = "#12151f"; g.fillRect(0, 0, w, h);
  const ph = state.playing || bars.length ? playheadBeat() : 0;
  state.playheadBeat = ph;
  const before = 8, after = 24, span = before + after;
  const x0 = ph - before;
  const X = (beat) => ((beat - x0) / span) * w;
  let lo = 127, hi = 0;
  for (const b of bars) for (const n of b.notes) { if (n.pitch < lo) lo = n.pitch; if (n.pitch > hi) hi = n.pitch; }
  if (lo > hi) { lo = 48; hi = 84; }
  const mid = (lo + hi) / 2, half = Math.max(12, (hi - lo) / 2 + 2);
  lo = mid - half; hi = mid + half;
  const rowH = h / (hi - lo + 1);
  const Y = (p) => h - (p - lo + 1) * rowH;
  // bar lines and segment labels
  g.strokeStyle = "#ffffff14"; g.lineWidth = 1;
  for (const b of bars) {
    if (b.start < x0 - 1 || b.start > x0 + span) continue;
    const x = Math.round(X(b.start)) + 0.5;
    g.beginPath(); g.moveTo(x, 0); g.lineTo(x, h); g.stroke();
  }
  g.font = `${Math.round(11 * dpr)}px system-ui, sans-serif`;
  g.fillStyle = "#ffffff88";
  for (const s of segmentsByBeat) {
    if (s.beat < x0 - 8 || s.beat > x0 + span) continue;
    const c2 = s.controls || {};
    g.fillText([c2.mood, c2.style].filter(Boolean).join(" · "), X(s.beat) + 4 * dpr, 14 * dpr);
  }
  let drawn = 0;
  for (const b of bars) {
    if (b.end < x0 || b.start > x0 + span) continue;
    for (const n of b.notes) {
      const xa = X(n.start), xb = X(n.start + n.duration);
      if (xb < 0 || xa > w) continue;
      const col = VOICE_COLORS[(Number(n.voice) || 0) % VOICE_COLORS.length];
      g.globalAlpha = n.start + n.duration < ph ? 0.45 : 0.95;
      g.fillStyle = col;
      g.fillRect(xa, Y(n.pitch), Math.max(2, xb - xa - 1), Math.max(2, rowH - 1));
      drawn++;
    }
  }
  g.globalAlpha = 1;
  const px = Math.round(X(ph)) + 0.5;
  g.strokeStyle = "#ff5a5a"; g.lineWidth = 2 * dpr;
  g.beginPath(); g.moveTo(px, 0); g.lineTo(px, h); g.stroke();
  state.rollNotesDrawn = drawn;
}

function frame() {
  try {
    state.audioState = ctx ? ctx.state : null;
    updateStatus();
    drawRoll();
    drawPad();
  } finally {
    requestAnimationFrame(frame);
  }
}

// ---- MIDI download ---------------------------------------------------------------------------
function buildMidi() {
  const midi = new Midi();
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

function downloadMidi() {
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

// ---- go ------------------------------------------------------------------------------------
setupControls();
drawPad();
requestAnimationFrame(frame);
connect().catch(() => {});
refreshPreferences();
