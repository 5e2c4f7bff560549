// Asking the model on the /studio page: continue, answer, harmonize and infill with the constraint
// controls, a suggestion accepted, rejected or regenerated, undo and redo, and the exports. The
// number boxes take the server's bounds and say why a value is refused (never a quietly changed number).
import { $, clearProblem, problem, problemSource, setStatus } from "/static/common.js";
import { api, applyState, enqueue, refreshPredictions } from "./api.js";
import { render } from "./main.js";
import { S, state } from "./state.js";

function constraints() {
  const c = {};
  if ($("scale").value) c.scale = $("scale").value;
  if ($("role").value) c.role = $("role").value;
  if ($("density").value) c.density = $("density").value;
  return c;
}

// ---- number boxes: the server's bounds, and a refusal in words (never a quietly changed number)
export async function loadBounds() {
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

export function checkBox(el) {
  const why = refusal(el);
  el.setAttribute("aria-invalid", why ? "true" : "false");
  if (why) problem(why, el.id);
  else if (problemSource() === el.id) clearProblem();
  return why;
}

// The box's number for a request, or null after saying why it is refused.
function boxValue(id) {
  const el = $(id);
  return checkBox(el) ? null : Number(el.value);
}

export function ask(kind) {
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

export function infillWords(sel) {
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

export function decide(action) {
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

export function history(action) {
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
export function download(format) {
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
