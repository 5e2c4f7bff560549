// The /studio page's requests to /api/studio: one helper that says why a request was refused,
// and the queue that runs the requests that change the piece one after another.
import { problem, withToken } from "/static/common.js";
import { render } from "./main.js";
import { setPredictions } from "./piano.js";
import { S, state } from "./state.js";

let queue = Promise.resolve();           // requests that change the piece run one after another

export async function api(method, path, body) {
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

export function enqueue(fn) {
  const p = queue.then(fn).catch((e) => problem(e.message || String(e)));
  queue = p;
  return p;
}

export function applyState(s) {
  state.notes = s.notes || [];
  state.canUndo = !!s.can_undo; state.canRedo = !!s.can_redo;
  state.barBeats = s.bar_beats || state.barBeats;
  state.sessionTempo = s.tempo || state.sessionTempo;
  if (state.suggestion && !(s.suggestions || []).some((g) => g.id === state.suggestion.id)) state.suggestion = null;
  if (s.predictions) setPredictions(s.predictions);
  render();
}

export async function refreshPredictions() {
  if (!state.session) return;
  setPredictions(await api("GET", S("/predictions")));
  render();
}
