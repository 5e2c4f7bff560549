"""MIDI ports for the live engine: a keyboard or DAW in, the accompaniment out (mido over
python-rtmidi), and the loop that drives ``LiveEngine`` in real time.

- ``list_ports()``: the names of the inputs and outputs the MIDI system offers.
- ``open_ports(inp, out)``: an input by name (exact, or the one name that contains it) and an
  output by name; ``out=None`` makes a virtual output named ``VIRTUAL_NAME`` where the
  system has virtual ports (ALSA on Linux, CoreMIDI on macOS), for a DAW to record from.
- ``run(engine, inport, outport)``: read note-on/note-off from ``inport`` (velocity 0 counts
  as a note-off), feed the engine, ``poll`` it at each deadline and send every event at its
  time on ``channel``; count-in clicks go to the General MIDI drum channel. It stops when
  ``stop()`` says so or on Ctrl-C (KeyboardInterrupt), and then stops cleanly: events not yet
  sent are dropped, every note it turned on gets its note-off, and "all notes off" goes to
  its channel. The clock and the sleep are parameters, so the loop runs in tests on a fake
  clock with fake ports (``FakeInput``, ``FakeOutput``).

A MIDI system that is not there (no ALSA sequencer, no python-rtmidi) is a ``PortError``
with one sentence, not a traceback.
"""

from __future__ import annotations

import heapq
import time

from cadenza.errors import CadenzaError
from cadenza.music.live.records import NoteOff, NoteOn

VIRTUAL_NAME = "Cadenza play-along"
DRUMS = 9                 # channel 10, counted from 0
POLL_S = 0.001            # how long the loop sleeps when there is nothing to do
MIN_SLEEP_S = 0.0002      # and at least this long when it sleeps at all


class PortError(CadenzaError):
    """A MIDI port or the MIDI system is missing or cannot be opened."""


def _mido():
    try:
        import mido
    except ImportError as exc:     # pragma: no cover - mido is a dependency
        raise PortError(f"MIDI needs the mido package ({exc}); install Cadenza's dependencies") from None
    try:
        import rtmidi  # noqa: F401
    except ImportError:
        raise PortError("MIDI ports need python-rtmidi: pip install python-rtmidi") from None
    return mido


def _system_error(exc: BaseException) -> PortError:
    text = " ".join(str(exc).split())
    if "ALSA" in text or "sequencer" in text.lower():
        return PortError("there is no MIDI system here (the ALSA sequencer /dev/snd/seq cannot be opened; "
                         "load the snd-seq kernel module or run where MIDI is available)")
    return PortError(f"the MIDI system failed: {text}")


def _check_system() -> None:
    import os
    import sys

    if sys.platform.startswith("linux") and not os.path.exists("/dev/snd/seq"):
        raise PortError("there is no MIDI system here (no ALSA sequencer: /dev/snd/seq is missing; load the "
                        "snd-seq kernel module or run where MIDI is available)")


def list_ports() -> tuple[list[str], list[str]]:
    """(input names, output names)."""
    mido = _mido()
    _check_system()
    try:
        return list(mido.get_input_names()), list(mido.get_output_names())
    except Exception as exc:       # rtmidi raises its own SystemError classes
        raise _system_error(exc) from None


def _pick(name: str, names: list[str], what: str) -> str:
    if name in names:
        return name
    hits = [n for n in names if name.lower() in n.lower()]
    if len(hits) == 1:
        return hits[0]
    offered = ", ".join(repr(n) for n in names) or "none"
    if hits:
        raise PortError(f"{what} {name!r} matches several ports ({', '.join(map(repr, hits))}); give more of its name")
    raise PortError(f"no MIDI {what} called {name!r}; the {what}s are: {offered} (cadenza live --list)")


def open_ports(inp: str, out: str | None):
    """(input port, output port, the output's name)."""
    mido = _mido()
    ins, outs = list_ports()
    try:
        inport = mido.open_input(_pick(inp, ins, "input"))
        if out is None:
            try:
                outport = mido.open_output(VIRTUAL_NAME, virtual=True)
            except (NotImplementedError, Exception) as exc:
                inport.close()
                if isinstance(exc, PortError):
                    raise
                raise PortError("this system has no virtual MIDI ports; name an output with --out "
                                "(cadenza live --list)") from None
            return inport, outport, VIRTUAL_NAME
        name = _pick(out, outs, "output")
        return inport, mido.open_output(name), name
    except PortError:
        raise
    except Exception as exc:
        raise _system_error(exc) from None


def _message(e, channel: int):
    import mido

    ch = DRUMS if e.role == "click" else channel
    if e.on:
        return mido.Message("note_on", channel=ch, note=e.pitch, velocity=max(1, min(127, e.velocity)))
    return mido.Message("note_off", channel=ch, note=e.pitch, velocity=0)


def as_event(msg, t: float):
    """A mido message as the engine's record (None for anything but a note)."""
    if msg.type == "note_on" and msg.velocity > 0:
        return NoteOn(t, msg.note, msg.velocity)
    if msg.type in ("note_on", "note_off"):
        return NoteOff(t, msg.note)
    return None


def run(engine, inport, outport, channel: int = 1, clock=time.monotonic, sleep=time.sleep, stop=lambda: False,
        on_event=None) -> dict:
    """Drive ``engine`` between the ports until ``stop()`` or Ctrl-C; returns counts."""
    queue: list = []               # (time, order, message)
    order = 0
    on: set[tuple[int, int]] = set()
    sent = received = 0
    interrupted = False

    def push(events):
        nonlocal order
        for e in events:
            heapq.heappush(queue, (e.time, order, _message(e, channel)))
            order += 1

    engine.clock = clock           # the engine's times are this loop's
    try:
        push(engine.start(clock()))
        while not stop():
            now = clock()
            while (msg := inport.poll()) is not None:
                e = as_event(msg, now)
                if e is None:
                    continue
                received += 1
                dl = engine.next_deadline()
                if dl is not None and dl <= now:
                    push(engine.poll(now))
                engine.feed(e)
                if on_event is not None:
                    on_event(e)
            dl = engine.next_deadline()
            if dl is not None and dl <= clock():
                push(engine.poll(clock()))
            while queue and queue[0][0] <= clock():
                _, _, msg = heapq.heappop(queue)
                outport.send(msg)
                sent += 1
                key = (msg.channel, msg.note)
                if msg.type == "note_on":
                    on.add(key)
                else:
                    on.discard(key)
            wake = min([x for x in (dl, queue[0][0] if queue else None) if x is not None] + [clock() + 0.01])
            pause = min(POLL_S, wake - clock())
            if pause > 0:
                sleep(max(pause, MIN_SLEEP_S))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        import mido

        engine.stop(clock())
        dropped = len(queue)
        for ch, note in sorted(on):
            outport.send(mido.Message("note_off", channel=ch, note=note, velocity=0))
        outport.send(mido.Message("control_change", channel=channel, control=123, value=0))
    return {"received": received, "sent": sent, "dropped": dropped, "released": len(on), "interrupted": interrupted}


class FakeInput:
    """An input port that plays (time, mido message) pairs when ``clock()`` reaches their time;
    ``interrupt_at``: raise KeyboardInterrupt (Ctrl-C) once the clock passes it."""

    def __init__(self, messages, clock, interrupt_at: float | None = None):
        self.messages = sorted(messages, key=lambda m: m[0])
        self.clock = clock
        self.interrupt_at = interrupt_at
        self.closed = False

    def poll(self):
        now = self.clock()
        if self.interrupt_at is not None and now >= self.interrupt_at:
            raise KeyboardInterrupt
        if self.messages and self.messages[0][0] <= now:
            return self.messages.pop(0)[1]
        return None

    def close(self):
        self.closed = True


class FakeOutput:
    """An output port that records (clock time, message)."""

    def __init__(self, clock):
        self.clock = clock
        self.sent: list = []
        self.closed = False

    def send(self, msg):
        self.sent.append((self.clock(), msg))

    def close(self):
        self.closed = True


class FakeClock:
    """A clock that moves only when slept on (and by the real time of the work between)."""

    def __init__(self, start: float = 0.0):
        self.t = start

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += max(s, 0.0)
