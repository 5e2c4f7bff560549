// What the pages share: the access token carried on every request, the status and error lines,
// and the testing hooks. (The SoundFont synth is synth.js, so the home page does not load it.)

const token = new URLSearchParams(location.search).get("token");

// `path` with the page's access token (when it has one) and any `extra` query parameters.
export function withToken(path, extra = {}) {
  const q = new URLSearchParams(extra);
  if (token) q.set("token", token);
  const s = q.toString();
  return s ? `${path}${path.includes("?") ? "&" : "?"}${s}` : path;
}

export const $ = (id) => document.getElementById(id);

// Testing hooks, read-only by convention: window.cadenza.debug.state (the page's state) and
// whatever else a page puts there (listen: .notes()).
export const debug = {};
window.cadenza = { debug };

// Every problem the page has shown, in order (the page's state lists it as `errors`).
export const errors = [];

// The status line (#status).
export function setStatus(s) { const el = $("status"); if (el.textContent !== s) el.textContent = s; }

// The error line (#error). `from`: the id of the input whose refusal it shows, if it is one.
let problemFrom = null;
export function problem(s, from = null) { errors.push(s); problemFrom = from; const el = $("error"); el.textContent = s; el.hidden = false; }
export function clearProblem() { problemFrom = null; const el = $("error"); el.hidden = true; el.textContent = ""; }
export const problemSource = () => problemFrom;
