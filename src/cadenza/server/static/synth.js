// The SoundFont synth the listen and studio pages play through.
import { WorkletSynthesizer } from "/static/vendor/cadenza-vendor.js";
import { problem, withToken } from "/static/common.js";

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
// gets it before it says "ready"; without sound, the error line says why and that `still` works.
export async function startSynth(ctx, state, still, use) {
  state.synth = "loading";
  try {
    use(await openSynth(ctx));
    state.synth = "ready";
  } catch (e) {
    state.synth = `failed: ${e.message || e}`;
    problem(`no sound: ${e.message || e} (${still})`);
  }
}
