// What the /listen page needs from npm, bundled by build.mjs into one ES module:
// the SoundFont synthesizer (an AudioWorklet; its processor file is copied beside the bundle)
// and a MIDI file writer for "Download MIDI".
export { WorkletSynthesizer } from "spessasynth_lib";
export { Midi } from "@tonejs/midi";
