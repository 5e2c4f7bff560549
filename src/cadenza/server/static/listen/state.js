// The /listen page's state: what the tests read (window.cadenza.debug.state), the timeline of
// bars, and the settings every part of the page uses.
import { debug, errors } from "/static/common.js";

export const LOOKAHEAD = 0.2;        // seconds of notes handed to the synthesizer ahead of time (under the
                                     // server's 0.5 s cut margin, so a cut finds them not yet handed over)
export const LOOKAHEAD_HIDDEN = 3.0; // ... while the tab is hidden (the browser then slows timers down)
export const TICK_MS = 50;           // scheduler period
export const PLAYHEAD_MS = 250;      // playhead report period
export const PAD_SEND_MS = 150;      // at most one mood control message per this
export const START_DELAY = 0.25;     // seconds between the first bar arriving and it sounding
export const PPQ = 480;              // MIDI download resolution

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

export const LISTENER = listenerId();
export const SEED = (() => { const v = new URLSearchParams(location.search).get("seed"); return v && /^\d{1,15}$/.test(v) ? Number(v) : null; })();

export const pad = { valence: 0.5, energy: 0.5, touched: false };

export const state = {
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
  errors,                // server error reasons and page problems
  playheadBeat: 0,
  synth: "not loaded",   // not loaded | loading | ready | failed: <why>
  audioState: null,
  rollNotesDrawn: 0,
  padSends: 0,
  preferences: null,
  lastDownload: null,   // {notes, pitches, bytes} of the last MIDI download
  notesPastCut: 0,      // notes from a cut's beat on that had already gone to the synthesizer
  lastCut: null,        // {beat, seqBefore}: the last cut and the highest note seq received before it
  pad,                  // the mood pad: {valence, energy, touched}
  tempoAuto: true,      // the tempo is left to the likes or the model (the handle follows it)
  statusChoosers: null, // who chose what the status shows: {control: "you" | "your likes" | "the model"}
};

// The timeline of this run (reset by Start).
export const tl = {
  bars: [],            // {bar, start, end, tempo, time|null, notes:[...], next}
  nextBar: 0,          // index of the first bar not fully handed to the synthesizer
  segmentsByBeat: [],  // segments of this run, sorted by beat
  channelProgram: new Map(),
  heard: [],           // notes handed to the synthesizer
  tempoChanges: [],    // {beat, tempo} of heard bars, for the MIDI file
  maxSeq: -1,          // the highest note sequence number received
};

export const prefs = { off: null };   // why the server keeps no preferences, from its ready message

debug.state = state;
debug.notes = () => tl.bars.flatMap((b) => b.notes);   // the timeline as it stands (after cuts)

export const round = (x, d = 2) => Math.round(x * 10 ** d) / 10 ** d;
