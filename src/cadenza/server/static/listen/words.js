// What the /listen page says: the status names what plays and who chose each control (you, your
// likes, the model), bars counted from 1 (the protocol's `bar` counts from 0); the tempo's words;
// and the preferences line.
import { $, setStatus, withToken } from "/static/common.js";
import { playheadBeat } from "./audio.js";
import { LISTENER, prefs, state, tl } from "./state.js";

const CHOOSER_WORDS = { listener: "you", preferences: "your likes", model: "the model" };

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
  for (let i = Math.min(tl.nextBar, tl.bars.length - 1); i >= 0; i--) {
    if (tl.bars[i].start <= beat + 1e-6) return tl.bars[i].bar;
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

export function setTempoAuto(auto) {
  state.tempoAuto = auto;
  $("tempo-auto").hidden = auto;
  $("tempo").classList.toggle("auto", auto);
  if (auto) showTempo(state.currentSegment && state.currentSegment.controls && Number(state.currentSegment.controls.tempo));
}

export function updateStatus() {
  if (!state.playing) return;
  const beat = playheadBeat();
  let seg = null;
  for (const s of tl.segmentsByBeat) if (s.beat <= beat + 1e-6) seg = s;
  if (!seg && tl.segmentsByBeat.length && state.notesPlayed === 0) {
    setStatus(state.synth === "loading" ? "Loading the SoundFont…" : "Starting…");
    return;
  }
  state.currentSegment = seg;
  if (state.tempoAuto) showTempo(seg && seg.controls && Number(seg.controls.tempo));
  if (seg) setStatus(segmentWords(seg, beat));
  else setStatus(state.synth === "loading" ? "Loading the SoundFont…" : "Waiting for the first notes…");
}

export async function refreshPreferences() {
  try {
    const r = await fetch(withToken(`/api/listener/${encodeURIComponent(LISTENER)}`));
    if (!r.ok || prefs.off) return;
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
