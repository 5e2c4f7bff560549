// WS /api/stream for the /listen page: the socket, and what each server message does. Each
// `notes` message is one bar on the page's beat timeline; a `cut` (after a skip) drops what
// was not yet handed to the synthesizer.
import { $, problem, withToken } from "/static/common.js";
import { beatsPerBar } from "./audio.js";
import { drawPad } from "./pad.js";
import { LISTENER, prefs, state, tl } from "./state.js";
import { stopPlayback } from "./transport.js";
import { refreshPreferences } from "./words.js";

let ws = null;
let wsReady = null;       // promise of the ready message for the current socket

function onSegment(m) {
  state.segments.push(m);
  state.lastSegment = m;
  tl.segmentsByBeat.push(m);
}

function onNotes(m) {
  const notes = (m.notes || []).slice().sort((a, b) => a.start - b.start);
  state.notesReceived += notes.length;
  for (const n of notes) if (n.seq > tl.maxSeq) tl.maxSeq = n.seq;
  const seg = state.lastSegment;
  const bars = tl.bars;
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
  state.lastCut = { beat: x, seqBefore: tl.maxSeq };
  // Drop every note from beat x on that is not yet handed to the synthesizer; a bar from x
  // on keeps what it already handed over but no length, so the new music from x follows
  // straight on and the page's beats stay the server's.
  const bars = tl.bars;
  for (let i = bars.length - 1; i >= 0 && bars[i].end > x; i--) {
    const bar = bars[i];
    if (bar.start >= x && bar.next === 0 && i >= tl.nextBar) { bars.splice(i, 1); continue; }
    state.notesPastCut += bar.notes.filter((n, j) => j < bar.next && n.start >= x).length;
    bar.notes = bar.notes.filter((n, j) => j < bar.next || n.start < x);
    bar.next = Math.min(bar.next, bar.notes.length);
    bar.end = Math.max(x, bar.start);
  }
  tl.nextBar = Math.min(tl.nextBar, bars.length);
  tl.segmentsByBeat = tl.segmentsByBeat.filter((s) => s.beat < x);
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
  const off = typeof m.preferences === "string" && m.preferences !== "on" ? m.preferences : null;
  prefs.off = off;
  if (off) $("prefs").textContent = `Preferences are ${off.replace(/^off: /, "off (")}${off.startsWith("off: ") ? ")" : ""}; the music still plays.`;
}

// The socket, opened once; the promise resolves with the server's ready message.
export function connect() {
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

export function send(m) {
  if (ws && ws.readyState === WebSocket.OPEN) { ws.send(JSON.stringify(m)); return true; }
  return false;
}

// Close the socket on purpose (Stop): no problem is reported.
export function disconnect() {
  if (ws) { const s = ws; ws = null; wsReady = null; state.connected = false; s.close(1000, "stopped"); }
}
