// The /studio page's state (what the tests read: window.cadenza.debug.state) and the constants
// and small helpers every part of the page uses.
import { debug, errors } from "/static/common.js";

export const LOW = 36, HIGH = 96;           // the on-screen piano: C2 .. C7
export const KEYMAP = "awsedftgyhujkolp;";  // offsets 0..16 from the keyboard's base C
const NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"];
export const KEYS = ["C", "G", "D", "A", "E", "B", "F#", "F", "Bb", "Eb", "Ab", "Db",
              "Am", "Em", "Bm", "F#m", "C#m", "Dm", "Gm", "Cm", "Fm"];
export const PERSON_COLOR = "#7fb2ff", MODEL_COLOR = "#ffb35c", PREVIEW_COLOR = "#8ee08a";
export const LOOKAHEAD_MS = 100;

export const pitchName = (p) => `${NAMES[p % 12]}${Math.floor(p / 12) - 1}`;
export const isBlack = (p) => [1, 3, 6, 8, 10].includes(p % 12);
export const q16 = (beats) => Math.round(beats * 4) / 4;

export const state = {
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
  errors,
  bounds: null,           // {tempo, bars, voices, k: {min, max, integer}} from GET /api/studio/bounds
  ready: false,
  live: { on: false, status: "off", origin: null, tempo: null, events: [], person: [], model: [], late: 0,
          kept: null, offset: 0 },   // play along: every event received (with .received), the take so far
};
debug.state = state;

// The session's address, with `rest` after it.
export const S = (rest = "") => `/api/studio/sessions/${encodeURIComponent(state.session)}${rest}`;
