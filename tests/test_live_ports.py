"""The port layer of play-along (cadenza.music.live.ports) and `cadenza live`.

Through fake ports on a fake clock everywhere; with real virtual ports only where the
machine has an ALSA sequencer (/dev/snd/seq) and python-rtmidi can open a client there
(``test_virtual_ports_round_trip``; skipped otherwise, also under CI: a CI runner without a
sequencer runs the fake-port tests only)."""

import os

import pytest

from conftest import require

mido = require("mido")

from cadenza.cli import main  # noqa: E402
from cadenza.music.live import LiveSettings  # noqa: E402
from cadenza.music.live import ports  # noqa: E402
from cadenza.music.live.engine import LiveEngine  # noqa: E402
from cadenza.music.live.ports import FakeClock, FakeInput, FakeOutput  # noqa: E402

from music_fixtures import tiny_model, tiny_model_dir  # noqa: E402

TUNE = [60, 64, 67, 65, 64, 62, 65, 67, 69, 67, 65, 64, 62, 60, 62, 64] * 2


def keyboard(tempo=120.0, start=0.5, notes=TUNE):
    spb = 60 / tempo
    msgs = []
    for k, p in enumerate(notes):
        msgs.append((start + k * spb, mido.Message("note_on", note=p, velocity=90)))
        msgs.append((start + (k + 0.9) * spb, mido.Message("note_on", note=p, velocity=0)))   # velocity 0: off
    return msgs


@pytest.fixture(scope="module")
def mm():
    return tiny_model()


def drive(mm, interrupt_at=None, until=17.5, **kw):
    clock = FakeClock()
    engine = LiveEngine(mm, LiveSettings(tempo=120, key="C", **kw), clock=clock)
    inp, out = FakeInput(keyboard(), clock, interrupt_at), FakeOutput(clock)
    counts = ports.run(engine, inp, out, channel=1, clock=clock, sleep=clock.sleep, stop=lambda: clock() > until)
    return engine, out, counts


def balanced(sent):
    on = {}
    for _, m in sent:
        if m.type == "note_on" and m.velocity > 0:
            on[(m.channel, m.note)] = on.get((m.channel, m.note), 0) + 1
        elif m.type in ("note_on", "note_off"):
            on[(m.channel, m.note)] = on.get((m.channel, m.note), 0) - 1
    return {k: v for k, v in on.items() if v}


def test_fake_ports_carry_the_accompaniment_out_at_its_times(mm):
    engine, out, counts = drive(mm)
    assert counts["received"] == 2 * len(TUNE) and not counts["interrupted"]
    notes = [(t, m) for t, m in out.sent if m.type == "note_on" and m.velocity > 0]
    assert len(notes) > 20 and {m.channel for _, m in notes} == {1}
    scheduled = [(e.time, e.pitch) for e in engine.events if e.on]
    for t, m in notes:                      # sent when due: not before, and within the loop's 1 ms step
        e = min((s for s in scheduled if s[1] == m.note), key=lambda s: abs(s[0] - t))
        assert e[0] - 1e-9 <= t <= e[0] + 0.0021, (t, e)
    assert balanced(out.sent) == {}
    assert out.sent[-1][1].type == "control_change" and out.sent[-1][1].control == 123     # all notes off


def test_ctrl_c_stops_cleanly_with_every_note_released(mm):
    engine, out, counts = drive(mm, interrupt_at=4.02)
    assert counts["interrupted"] and counts["sent"] > 0
    assert balanced(out.sent) == {}
    assert max(t for t, _ in out.sent) <= 4.02 + 0.002     # nothing scheduled for later went out


def test_count_in_clicks_go_to_the_drum_channel(mm):
    _, out, _ = drive(mm, count_in=2, until=3.0)
    clicks = [m for _, m in out.sent if m.channel == 9 and m.type == "note_on" and m.velocity > 0]
    assert len(clicks) == 2


def test_cadenza_live_without_a_midi_system_or_port_says_so(capsys):
    code = main(["live", "--in", "no-such-keyboard-xyz", "--model", str(tiny_model_dir())])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("cadenza: error:")
    assert main(["live", "--model", str(tiny_model_dir())]) == 2
    assert main(["live", "--in", "x", "--tempo", "1000"]) == 2


def test_cadenza_live_list_and_save_through_fake_ports(monkeypatch, tmp_path, capsys, mm):
    import symusic

    monkeypatch.setattr(ports, "list_ports", lambda: (["Fake keyboard"], ["Fake synth"]))
    assert main(["live", "--list"]) == 0
    assert "Fake keyboard" in capsys.readouterr().out
    clock = FakeClock()
    fake_in, fake_out = FakeInput(keyboard(), clock), FakeOutput(clock)
    monkeypatch.setattr(ports, "open_ports", lambda inp, out: (fake_in, fake_out, "Fake synth"))
    real_run = ports.run
    monkeypatch.setattr(ports, "run", lambda engine, i, o, channel: real_run(
        engine, i, o, channel=channel, clock=clock, sleep=clock.sleep, stop=lambda: clock() > 17.5))
    out = tmp_path / "take.mid"
    code = main(["live", "--in", "Fake", "--role", "bass", "--tempo", "120", "--key", "C", "--save", str(out),
                 "--model", str(tiny_model_dir())])
    assert code == 0, capsys.readouterr().err
    assert fake_in.closed and fake_out.closed
    s = symusic.Score(str(out))
    names = {t.name: t for t in s.tracks}
    assert set(names) == {"person", "Cadenza"}
    assert [n.pitch for n in names["person"].notes] == TUNE
    assert any("Cadenza" in m.text and "person" in m.text for m in s.markers)


def _alsa_sequencer() -> bool:
    if not os.path.exists("/dev/snd/seq"):
        return False
    try:
        ports.list_ports()
        return True
    except ports.PortError:
        return False


@pytest.mark.skipif(not _alsa_sequencer(), reason="no ALSA sequencer here: the fake-port tests cover the port layer")
def test_virtual_ports_round_trip(mm):
    """A virtual keyboard into `run`, its virtual output read back (real rtmidi, ALSA)."""
    import time

    keys = mido.open_output("cadenza-test-keys", virtual=True)
    inport, outport, name = ports.open_ports("cadenza-test-keys", None)
    listener = mido.open_input(name)
    engine = LiveEngine(mm, LiveSettings(tempo=120, key="C"))
    import threading

    t0 = time.monotonic()
    done = threading.Event()
    th = threading.Thread(target=lambda: ports.run(engine, inport, outport, stop=done.is_set))
    th.start()
    try:
        for k, p in enumerate(TUNE[:12]):
            time.sleep(max(0.0, t0 + 0.3 + k * 0.5 - time.monotonic()))
            keys.send(mido.Message("note_on", note=p, velocity=90))
            time.sleep(0.4)
            keys.send(mido.Message("note_off", note=p))
        time.sleep(0.5)
    finally:
        done.set()
        th.join()
        got = list(listener.iter_pending())
        for p in (keys, inport, outport, listener):
            p.close()
    assert sum(1 for m in got if m.type == "note_on" and m.velocity > 0) > 5
