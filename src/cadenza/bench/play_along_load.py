"""Play along under load (``benchmarks/play_along.py --load``): sessions at once, in real time.

``sessions`` engines play held-out melodies in real time (threads of one process, as a
server holds them; ``live.simulate.play_realtime``, the real clock), beside a thread asking a
studio session for predictions without pause (the server's other work, each a fresh read of
the piece). Figures: the decision time after a note-on, the smallest lead, late events and
missed beats over all sessions.
"""

from __future__ import annotations

import statistics
import threading
import time


def pct(xs, q) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return float(s[k])



def load_run(mm, mels: list[dict], role: str, sessions: int, bars: int) -> dict:
    """``sessions`` engines in real time at once (threads), beside a studio session asking for
    predictions without pause (the server's other work)."""
    from cadenza.music.live import LiveSettings
    from cadenza.music.live.engine import LiveEngine
    from cadenza.music.live.simulate import melody_events, play_realtime
    from cadenza.music.studio import StudioSession

    results = [None] * sessions
    stop = threading.Event()
    other = {"predictions": 0}

    def background():
        s = StudioSession(mm, tempo=100)
        s.play([{"pitch": p, "start": b, "duration": d} for b, d, p in mels[0]["notes"][:24]])
        while not stop.is_set():
            s._dec = None                 # a fresh read of the piece each time: the heavier kind of request
            s.predictions()
            other["predictions"] += 1

    def one(k):
        mel = mels[k % len(mels)]
        notes = [(b, d, p) for b, d, p in mel["notes"] if b < bars * int(mel["metre"][0])]
        engine = LiveEngine(mm, LiveSettings(role=role, tempo=mel["tempo"], key=mel["key"],
                                             time_signature=mel["metre"], style=mel["style"], seed=k),
                            clock=time.monotonic)
        events = melody_events(notes, mel["tempo"], jitter_s=0.02, seed=k)
        play_realtime(engine, events, time.monotonic() + 0.5 + 0.1 * k)
        results[k] = {"decision_ms": [d.elapsed_s * 1000 for d in engine.decisions if d.cause == "note_on"],
                      "lead_ms": [e.lead * 1000 for e in engine.events], "missed": engine.missed,
                      "late": sum(1 for e in engine.events if e.lead <= 0)}

    bg = threading.Thread(target=background, daemon=True)
    bg.start()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=one, args=(k,)) for k in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    bg.join()
    dec = [x for r in results for x in r["decision_ms"]]
    lead = [x for r in results for x in r["lead_ms"]]
    return {"sessions": sessions, "role": role, "wall_s": time.perf_counter() - t0,
            "decision_median_ms": statistics.median(dec), "decision_p99_ms": pct(dec, 99),
            "min_lead_ms": min(lead), "late": sum(r["late"] for r in results),
            "missed": sum(r["missed"] for r in results), "other_predictions": other["predictions"],
            "decisions": len(dec), "events": len(lead)}
