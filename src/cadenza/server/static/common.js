// What the pages share: the access token carried on every request, and the SoundFont synth.
import { WorkletSynthesizer } from "/static/vendor/cadenza-vendor.js";

const token = new URLSearchParams(location.search).get("token");

// `path` with the page's access token (when it has one) and any `extra` query parameters.
export function withToken(path, extra = {}) {
  const q = new URLSearchParams(extra);
  if (token) q.set("token", token);
  const s = q.toString();
  return s ? `${path}${path.includes("?") ? "&" : "?"}${s}` : path;
}

// The General MIDI synth on `ctx`: the vendored AudioWorklet with the server's SoundFont.
export async function openSynth(ctx) {
  const [, bank] = await Promise.all([
    ctx.audioWorklet.addModule("/static/vendor/spessasynth_processor.min.js"),
    fetch(withToken("/api/soundfont")).then((r) => {
      if (!r.ok) throw new Error(`GET /api/soundfont answered ${r.status}`);
      return r.arrayBuffer();
    }),
  ]);
  const s = new WorkletSynthesizer(ctx);
  s.connect(ctx.destination);
  await s.soundBankManager.addSoundBank(bank, "main");
  await s.isReady;
  return s;
}

// Open the synth for a page: `state.synth` goes "loading" -> "ready" or "failed: <why>"; `use(synth)`
// gets it before it says "ready"; without sound, `problem` is told why and that `still` works.
export async function startSynth(ctx, state, problem, still, use) {
  state.synth = "loading";
  try {
    use(await openSynth(ctx));
    state.synth = "ready";
  } catch (e) {
    state.synth = `failed: ${e.message || e}`;
    problem(`no sound: ${e.message || e} (${still})`);
  }
}
