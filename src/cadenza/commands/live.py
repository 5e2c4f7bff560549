"""`cadenza live`: Cadenza plays along with a MIDI keyboard or a DAW, in time.

Thin over ``cadenza.music.live`` (the engine) and ``cadenza.music.live.ports`` (mido /
python-rtmidi ports and the real-time loop). Ctrl-C stops it cleanly.
"""

from __future__ import annotations

from cadenza.commands.music_options import MODEL_HELP, threads


def _live(args) -> int:
    from cadenza.music.live import ports

    if args.list:
        ins, outs = ports.list_ports()
        print("MIDI inputs:" + ("" if ins else " none"))
        for n in ins:
            print(f"  {n}")
        print("MIDI outputs:" + ("" if outs else " none"))
        for n in outs:
            print(f"  {n}")
        print(f"(without --out, cadenza live offers a virtual output named {ports.VIRTUAL_NAME!r} where the "
              "system has virtual ports)")
        return 0
    if not args.inp:
        from cadenza.errors import ConfigError

        raise ConfigError("name the MIDI input to play along with: --in PORT (cadenza live --list shows them)")
    from cadenza.music.live import LiveSettings
    from cadenza.music.live.engine import LiveEngine
    from cadenza.music.load import load_model

    settings = LiveSettings(role=args.role, tempo=args.tempo, time_signature=args.time_signature, key=args.key,
                            scale=args.scale, density=args.density, follow=not args.no_follow,
                            count_in=args.count_in, lead_ms=args.lead_ms, style=args.style)
    if not 1 <= args.channel <= 16:
        from cadenza.errors import ConfigError

        raise ConfigError(f"--channel must be from 1 to 16, not {args.channel}")
    threads(args.threads)
    inport, outport, out_name = ports.open_ports(args.inp, args.out)
    try:
        mm = load_model(args.model, decode_weights="int8")
        engine = LiveEngine(mm, settings)
    except BaseException:
        inport.close()
        outport.close()
        raise
    print(f"Cadenza plays {settings.role} from {args.inp!r} to {out_name!r} (channel {args.channel}), "
          f"{settings.tempo:g} bpm {settings.time_signature}"
          + (", following your tempo" if settings.follow else "")
          + (f", {settings.count_in} beats of count-in" if settings.count_in else ", from your first note")
          + f"; model {mm.version}. Ctrl-C stops.")
    try:
        counts = ports.run(engine, inport, outport, channel=args.channel - 1)
    finally:
        inport.close()
        outport.close()
    print(f"stopped: {counts['received']} notes in, {counts['sent']} messages out, {counts['released']} notes "
          f"released; tempo at the end {engine.grid.tempo:.1f} bpm")
    if args.save:
        _save(mm, engine, settings, args.save)
    return 0


def _save(mm, engine, settings, path) -> None:
    from cadenza.io import write_bytes_atomic
    from cadenza.music.studio import StudioSession

    s = StudioSession(mm, tempo=min(240.0, max(30.0, round(engine.grid.tempo, 1))),
                      time_signature=settings.time_signature, key=settings.key or settings.scale or "C",
                      style=settings.style)
    take = [n.to_dict() for n in engine.take()]
    if take:
        first = min(n["start"] for n in take)
        bar = s.bar_beats
        s.keep(take, offset=-(-max(0.0, -first - 0.1) // bar) * bar)     # a pickup gets a bar of its own
    data, record = s.export()
    write_bytes_atomic(path, data)
    print(f"wrote {path}: the take with its authors ({record['credit']['human_percent']}% of the notes by you)")


def register(subparsers) -> None:
    from cadenza.music.live import BOUNDS, DENSITIES, ROLES

    lo_t, hi_t, _ = BOUNDS["tempo"]
    lo_c, hi_c, _ = BOUNDS["count_in"]
    lo_l, hi_l, _ = BOUNDS["lead_ms"]
    p = subparsers.add_parser(
        "live", help="play along with a MIDI keyboard or DAW, in time",
        description="Cadenza listens to a MIDI input and plays along in time: it predicts your next notes, decides "
                    "each beat's accompaniment before the beat and corrects it on the next beat if you go elsewhere. "
                    "The beat grid starts at your first note (or after --count-in clicks) and follows your tempo "
                    "once 4 beats are heard. Without --out it offers a virtual output port for a DAW or synth where "
                    "the system has one. Ctrl-C stops cleanly (every note it played is released).")
    p.add_argument("--list", action="store_true", help="list the MIDI inputs and outputs and exit")
    p.add_argument("--in", dest="inp", metavar="PORT", help="the MIDI input you play on (a name, or part of one)")
    p.add_argument("--out", metavar="PORT", help="the MIDI output for the accompaniment (default: a virtual port "
                                                  "named 'Cadenza play-along' where the system offers them)")
    p.add_argument("--role", choices=ROLES, default="chords",
                   help="chords (a chord each beat), bass, counter (a counter-melody) or answer (the model plays "
                        "in the bars you leave silent); default chords")
    p.add_argument("--tempo", type=float, default=100.0, metavar="BPM",
                   help=f"starting tempo, {lo_t:g}-{hi_t:g} beats per minute (default 100; followed from your "
                        "playing unless --no-follow)")
    p.add_argument("--no-follow", action="store_true", help="keep --tempo instead of following yours")
    p.add_argument("--time-signature", default="4/4", metavar="N/D", help="metre (default 4/4)")
    p.add_argument("--count-in", type=int, default=0, metavar="BEATS",
                   help=f"clicks before the first downbeat, {lo_c}-{hi_c} (default 0: your first note is the "
                        "first downbeat)")
    p.add_argument("--key", help="the key you play in, e.g. G or Em (default: found from your notes)")
    p.add_argument("--scale", metavar="KEY", help="scale lock: every accompaniment note keeps to this key's scale")
    p.add_argument("--density", choices=DENSITIES, help="sparse (each half bar), medium (each beat; the default) or "
                                                        "dense (each eighth)")
    p.add_argument("--style", default="folk", help="the style the model hears you in (default folk)")
    p.add_argument("--lead-ms", type=float, default=80.0, metavar="MS",
                   help=f"how long before its beat a decision is final, {lo_l:g}-{hi_l:g} ms (default 80)")
    p.add_argument("--channel", type=int, default=2, metavar="N", help="MIDI channel of the accompaniment (default 2)")
    p.add_argument("--save", metavar="OUT.mid", help="when stopped, write the take: your part and Cadenza's on their "
                                                     "own tracks, with the credit line")
    p.add_argument("--model", metavar="DIR", help=MODEL_HELP)
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for the model (default 1)")
    p.set_defaults(func=_live)
