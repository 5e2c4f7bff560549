"""Bad input and failures, tried on purpose, through the CLI: every case must exit with code 2,
print exactly one line on stderr (no traceback), create no file anywhere in its folder, and
leave every existing file (an older OUT.mid, OUT.wav, the inputs, the model) byte-identical.

Each row of CASES builds its situation in a fresh folder and returns the command line. Most
run in-process (``cadenza.cli.main``) against a tiny model trained once per session; the
full disk runs in a subprocess under a file-size limit (``ulimit -f``), and the permission
cases drop the root override capabilities while they run when the suite runs as root (for
whom ``chmod 000`` alone stops nothing). The README's Reliability section states how many
cases there are (``test_the_readme_counts_the_cases`` keeps it true).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import require

require("miditok")
require("music21")
symusic = require("symusic")
require("tinysoundfont")
require("torch")

import music_fixtures as mf  # noqa: E402

from cadenza.cli import main  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"
OLD_MIDI = b"MThd an older piece, which must survive"
OLD_WAV = b"RIFF an older recording, which must survive"


# --------------------------------------------------------------------------- shared inputs
@pytest.fixture(scope="session")
def model_dir() -> Path:
    return mf.tiny_model_dir()


@pytest.fixture(scope="session")
def inputs(tmp_path_factory) -> dict:
    """MIDI files shared by the cases (each case copies what it uses)."""
    d = tmp_path_factory.mktemp("failure-inputs")
    files = {"tune": mf.write_midi_file(mf.melody_score(2), d / "tune.mid")}

    def one_track(name, notes, qpm):
        score = symusic.Score(480)
        track = symusic.Track(program=0)
        for time, dur, pitch in notes:
            track.notes.append(symusic.Note(time, dur, pitch, 80))
        score.tracks.append(track)
        score.tempos.append(symusic.Tempo(0, qpm=qpm))
        score.dump_midi(str(d / f"{name}.mid"))
        files[name] = d / f"{name}.mid"

    # 200,000 sixteenth notes (about 14 hours at 120 bpm)
    one_track("huge", ((i * 120, 120, 48 + i % 24) for i in range(200_000)), 120)
    # all below the lowest piano key (21)
    one_track("low", ((i * 480, 480, p) for i, p in enumerate((2, 5, 9, 12, 9, 5, 2, 0))), 100)
    # a note after 3,700 s at 120 bpm
    one_track("long", ((0, 480, 60), (480 * 2 * 3700, 480, 64)), 120)
    from cadenza.render import default_soundfont

    files["soundfont"] = default_soundfont()
    return files


# --------------------------------------------------------------------------- permission denied, as root too
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


@contextlib.contextmanager
def permissions_enforced():
    """Make file permission bits bind this thread. Root bypasses them through the
    CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH capabilities, so for root they are dropped from
    the effective set (kept in the permitted set and restored afterwards)."""
    if os.geteuid() != 0:
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    header = _CapHeader(0x20080522, 0)          # _LINUX_CAPABILITY_VERSION_3, this thread
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        pytest.skip("cannot read this process's capabilities to make permissions bind for root")
    saved = data[0].effective
    data[0].effective = saved & ~((1 << _CAP_DAC_OVERRIDE) | (1 << _CAP_DAC_READ_SEARCH))
    if libc.capset(ctypes.byref(header), data) != 0:
        pytest.skip("cannot drop the root override capabilities to make permissions bind")
    try:
        yield
    finally:
        data[0].effective = saved
        libc.capset(ctypes.byref(header), data)


def _assert_permissions_bind(path: Path, write: bool) -> None:
    """The simulation is real: the OS itself refuses (checked before the CLI runs)."""
    with pytest.raises(PermissionError):
        if write:
            (path / ".probe").write_bytes(b"x")
        else:
            path.read_bytes()


# --------------------------------------------------------------------------- the cases
@dataclass
class Ctx:
    root: Path                 # everything of the case lives here (snapshotted)
    out: Path                  # the output folder, holding an older piece.mid and piece.wav
    model: str
    inputs: dict
    monkeypatch: object
    during: list = field(default_factory=list)   # context managers to enter around the run
    kind: str = "in-process"                     # or "ulimit": a subprocess under a file-size limit
    fsize: int = 0

    def copy(self, name: str) -> str:
        dest = self.root / "in" / Path(self.inputs[name]).name
        dest.parent.mkdir(exist_ok=True)
        if not dest.exists():
            shutil.copyfile(self.inputs[name], dest)
        return str(dest)

    def model_copy(self, source=None) -> Path:
        d = self.root / "model"
        shutil.copytree(source or self.model, d)
        return d

    def tokenizer(self, d: Path) -> dict:
        return json.loads((d / "tokenizer.json").read_text())


def _compose(c: Ctx, *extra, model=None, out="piece.mid"):
    return ["compose", "--model", str(model or c.model), "--bars", "1", "--seed", "1", "--no-progress",
            "-o", str(c.out / out), *extra]


def _compose_with_model(change):
    """A compose against a copy of the tiny model that ``change(ctx, model_dir)`` spoils."""
    def build(c: Ctx):
        d = c.model_copy()
        change(c, d)
        return _compose(c, model=d)
    return build


def _edit_tokenizer(edit):
    def change(c, d):
        tok = c.tokenizer(d)
        edit(tok)
        (d / "tokenizer.json").write_text(json.dumps(tok))
    return change


def _edit_config(edit):
    def change(c, d):
        meta = json.loads((d / "config.json").read_text())
        edit(meta)
        (d / "config.json").write_text(json.dumps(meta))
    return change


def _unreadable_input(command, *extra):
    def build(c: Ctx):
        tune = Path(c.copy("tune"))
        tune.chmod(0)
        c.during.append(permissions_enforced())
        c.during.append(_check(lambda: _assert_permissions_bind(tune, write=False)))
        argv = [command, str(tune), "--model", c.model, *extra]
        if command == "render":
            argv = ["render", str(tune), "-o", str(c.out / "piece.wav")]
        elif command != "predict":
            argv += ["--no-progress", "-o", str(c.out / "piece.mid")]
        return argv
    return build


@contextlib.contextmanager
def _check(fn):
    fn()
    yield


def _read_only(c: Ctx, argv):
    """``argv`` with the output folder made read-only (and the permission really binding)."""
    c.out.chmod(0o555)
    c.during.append(permissions_enforced())
    c.during.append(_check(lambda: _assert_permissions_bind(c.out, write=True)))
    return argv


def _read_only_out(c: Ctx):
    return _read_only(c, _compose(c))


def _not_a_soundfont(c: Ctx):
    fake = c.root / "fake.sf2"
    fake.write_text("this is a text file, not a SoundFont\n")
    return _compose(c, "--soundfont", str(fake))


def _cut_soundfont(c: Ctx):
    cut = c.root / "cut.sf2"
    cut.write_bytes(Path(c.inputs["soundfont"]).read_bytes()[:65536])
    return _compose(c, "--soundfont", str(cut))


def _full_disk_fsync(c: Ctx):
    import errno

    import cadenza.io

    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    c.monkeypatch.setattr(cadenza.io.os, "fsync", fsync)
    return _compose(c)


def _no_room_for_wav(c: Ctx):
    import collections

    usage = collections.namedtuple("usage", "total used free")
    c.monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 500_000, 500_000))
    return _compose(c)


def _file_size_limit(command):
    def build(c: Ctx):
        c.kind, c.fsize = "ulimit", 200 * 1024     # the MIDI and PNG fit, the WAV (at least 260 kB) does not
        if command == "render":
            return ["render", c.copy("tune"), "-o", str(c.out / "piece.wav"), "--png", str(c.out / "piece.png")]
        # continue keeps the input's notes, so there is always audio to write
        return ["continue", c.copy("tune"), "--model", c.model, "--bars", "1", "--seed", "1", "--no-progress",
                "-o", str(c.out / "piece.mid")]
    return build


def _wav_is_a_folder(c: Ctx):
    (c.root / "out2").mkdir()
    (c.root / "out2" / "piece.wav").mkdir()
    (c.root / "out2" / "piece.mid").write_bytes(OLD_MIDI)
    return ["compose", "--model", c.model, "--bars", "1", "-o", str(c.root / "out2" / "piece.mid")]


def _tiny_dataset(c: Ctx) -> Path:
    import numpy as np

    from cadenza.data.format import write_dataset

    rng = np.random.default_rng(0)
    d = c.root / "ds"
    write_dataset(d, {"train": rng.integers(0, 256, 4096), "val": rng.integers(0, 256, 1024)}, 256,
                  modality="text")
    return d


def _train_read_only_out(c: Ctx):
    data = _tiny_dataset(c)
    return _read_only(c, ["train", "--data", str(data), "--out", str(c.out / "run"), "--preset", "tiny",
                          "--steps", "1", "--no-progress", "--no-tensorboard"])


def _shipped_truncated_weights(c: Ctx):
    from cadenza.music.registry import default_model_dir

    shipped = default_model_dir()          # the shipped model must be there: no skip
    d = c.root / "shipped-copy"
    d.mkdir()
    for name in ("config.json", "tokenizer.json"):
        shutil.copyfile(shipped / name, d / name)
    with open(shipped / "model.safetensors", "rb") as fh:   # a download that stopped at 1 MB
        (d / "model.safetensors").write_bytes(fh.read(1 << 20))
    return ["compose", "--model", str(d), "--bars", "1", "-o", str(c.out / "piece.mid")]


def _shipped_wrong_tokenizer(c: Ctx):
    """The shipped weights with another vocabulary's tokenizer (weights linked, not copied)."""
    from cadenza.music.registry import default_model_dir

    shipped = default_model_dir()
    d = c.root / "shipped-mixed"
    d.mkdir()
    shutil.copyfile(shipped / "config.json", d / "config.json")
    os.symlink(shipped / "model.safetensors", d / "model.safetensors")
    tok = json.loads((shipped / "tokenizer.json").read_text())
    tok["vocab_size"] = tok["vocab_size"] + 7
    (d / "tokenizer.json").write_text(json.dumps(tok))
    return ["predict", c.copy("tune"), "--model", str(d)]


CASES = [
    # id, build(ctx) -> argv, words the one line must contain (lower case)
    # ---- compose: outputs
    ("compose: output in a missing folder", lambda c: _compose(c, out="no/such/folder/piece.mid"),
     ["does not exist", "no/such/folder"]),
    ("compose: output is a folder", lambda c: ((c.out / "dir.mid").mkdir(), _compose(c, out="dir.mid"))[1],
     ["dir.mid", "folder"]),
    ("compose: OUT.wav next to it is a folder", _wav_is_a_folder, ["piece.wav", "folder"]),
    ("compose: read-only output folder", _read_only_out, ["permission denied", "out"]),
    ("compose: SoundFont that is not one", _not_a_soundfont, ["fake.sf2", "not a soundfont"]),
    ("compose: SoundFont cut short", _cut_soundfont, ["cut.sf2", "cut short"]),
    ("compose: missing SoundFont", lambda c: _compose(c, "--soundfont", str(c.root / "nope.sf2")),
     ["nope.sf2", "does not exist"]),
    ("compose: --bars 2000 with audio", lambda c: _compose(c)[:-2] + ["--bars", "2000", "-o", str(c.out / "piece.mid")],
     ["200 minutes", "40 bpm", "--no-audio"]),
    ("compose: --seconds 3600 with audio (no room for the tail)",
     lambda c: ["compose", "--model", c.model, "--seconds", "3600", "-o", str(c.out / "piece.mid")],
     ["3,601.5 s", "audio rendering stops at 3,600 s"]),
    ("continue: full disk (ulimit -f)", _file_size_limit("continue"), ["piece.wav", "file-size limit"]),
    ("compose: full disk at the commit (fsync fails)", _full_disk_fsync, ["piece.mid", "no space left"]),
    ("compose: no room for the WAV", _no_room_for_wav, ["piece.wav", "free"]),
    ("compose: an energy plan with a word for a value", lambda c: _compose(c, "--energy", "0.2,loud@9"),
     ["energy", "number"]),
    ("compose: a mood plan from bar 0", lambda c: _compose(c, "--mood", "calm,happy@0"), ["mood", "bar"]),
    # ---- model folders
    ("model: 0-byte tokenizer.json", _compose_with_model(lambda c, d: (d / "tokenizer.json").write_bytes(b"")),
     ["tokenizer.json", "empty"]),
    ("model: tokenizer.json with a wrong vocabulary size",
     _compose_with_model(_edit_tokenizer(lambda t: t.update(vocab_size=t["vocab_size"] + 1))),
     ["tokenizer.json", "config.json", "vocabulary"]),
    ("model: missing config.json", _compose_with_model(lambda c, d: (d / "config.json").unlink()),
     ["config.json", "has no"]),
    ("model: tokenizer.json without \"config\"", _compose_with_model(_edit_tokenizer(lambda t: t.pop("config"))),
     ["tokenizer.json", "config"]),
    ("model: tokenizer.json with a wrongly typed field",
     _compose_with_model(_edit_tokenizer(lambda t: t["config"].update(positions_per_beat="twelve"))),
     ["tokenizer.json", "positions_per_beat", "whole number"]),
    ("model: tokenizer.json with a wrongly typed nested setting",
     _compose_with_model(_edit_tokenizer(lambda t: t["config"].update(time_signatures={"4": 7}))),
     ["tokenizer.json", "wrong type"]),
    ("model: tokenizer.json from a future Cadenza",
     _compose_with_model(_edit_tokenizer(lambda t: t.update(codec_version=99))),
     ["tokenizer.json", "newer", "upgrade"]),
    ("model: tokenizer.json cut short",
     _compose_with_model(lambda c, d: (d / "tokenizer.json").write_bytes((d / "tokenizer.json").read_bytes()[:500])),
     ["tokenizer.json", "not valid json"]),
    ("model: config.json from a future Cadenza", _compose_with_model(_edit_config(lambda m: m.update(format_version=7))),
     ["config.json", "newer"]),
    ("model: config.json with a wrongly typed field",
     _compose_with_model(_edit_config(lambda m: m["config"].update(d_model="wide"))), ["config.json"]),
    ("model: 0-byte model.safetensors", _compose_with_model(lambda c, d: (d / "model.safetensors").write_bytes(b"")),
     ["model.safetensors", "empty"]),
    ("model: shipped model with truncated weights", _shipped_truncated_weights, ["model.safetensors"]),
    ("model: shipped weights with a tokenizer of another size", _shipped_wrong_tokenizer,
     ["tokenizer.json", "vocabulary"]),
    # ---- continue / harmonize / predict: inputs
    ("continue: MIDI without read permission", _unreadable_input("continue"), ["tune.mid", "permission denied"]),
    ("continue: MIDI with 200,000 notes", lambda c: ["continue", c.copy("huge"), "--model", c.model, "-o",
                                                     str(c.out / "piece.mid")], ["200,000 notes", "50,000"]),
    ("continue: only notes outside the model's pitch range",
     lambda c: ["continue", c.copy("low"), "--model", c.model, "-o", str(c.out / "piece.mid")],
     ["low.mid", "pitch", "range"]),
    ("continue: --bars 2000 with audio",
     lambda c: ["continue", c.copy("tune"), "--model", c.model, "--bars", "2000", "-o", str(c.out / "piece.mid")],
     ["minutes", "audio"]),
    ("continue: input is a folder", lambda c: ["continue", str(c.out), "--model", c.model, "-o",
                                               str(c.root / "x.mid")], ["folder"]),
    ("harmonize: only notes outside the model's pitch range",
     lambda c: ["harmonize", c.copy("low"), "--model", c.model, "-o", str(c.out / "piece.mid")],
     ["low.mid", "range", "melody"]),
    ("harmonize: MIDI with 200,000 notes", lambda c: ["harmonize", c.copy("huge"), "--model", c.model, "-o",
                                                      str(c.out / "piece.mid")], ["200,000", "at most"]),
    ("harmonize: SoundFont that is not one",
     lambda c: (c.root.joinpath("x.sf2").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt "),
                ["harmonize", c.copy("tune"), "--model", c.model, "--soundfont", str(c.root / "x.sf2"),
                 "-o", str(c.out / "piece.mid")])[1], ["x.sf2", "not a soundfont"]),
    ("harmonize: output in a missing folder",
     lambda c: ["harmonize", c.copy("tune"), "--model", c.model, "-o", str(c.root / "gone" / "h.mid")],
     ["gone", "does not exist"]),
    ("predict: MIDI without read permission", _unreadable_input("predict"), ["tune.mid", "permission denied"]),
    ("predict: MIDI with 200,000 notes", lambda c: ["predict", c.copy("huge"), "--model", c.model],
     ["200,000 notes"]),
    ("predict: only notes outside the model's pitch range", lambda c: ["predict", c.copy("low"), "--model", c.model],
     ["low.mid", "range"]),
    # ---- render
    ("render: MIDI without read permission", _unreadable_input("render"), ["tune.mid", "permission denied"]),
    ("render: SoundFont that is not one",
     lambda c: (c.root.joinpath("x.sf2").write_text("no"),
                ["render", c.copy("tune"), "-o", str(c.out / "piece.wav"), "--png", str(c.out / "roll.png"),
                 "--soundfont", str(c.root / "x.sf2")])[1], ["x.sf2", "not a soundfont"]),
    ("render: longer than the audio limit",
     lambda c: ["render", c.copy("long"), "-o", str(c.out / "piece.wav"), "--png", str(c.out / "roll.png")],
     ["minutes", "audio"]),
    ("render: output in a missing folder",
     lambda c: ["render", c.copy("tune"), "-o", str(c.root / "gone" / "a.wav")], ["gone", "does not exist"]),
    ("render: output is a folder",
     lambda c: ((c.out / "roll.png").mkdir(), ["render", c.copy("tune"), "-o", str(c.out / "piece.wav"),
                                              "--png", str(c.out / "roll.png")])[1], ["roll.png", "folder"]),
    ("render: full disk (ulimit -f)", _file_size_limit("render"), ["piece.wav", "file-size limit"]),
    # ---- data
    ("data midi: source is not a folder", lambda c: ["data", "midi", c.copy("tune"), "--out", str(c.out / "ds")],
     ["tune.mid", "not a folder"]),
    ("data midi: folder without MIDI files",
     lambda c: ((c.root / "empty").mkdir(), ["data", "midi", str(c.root / "empty"), "--out", str(c.out / "ds")])[1],
     ["no .mid"]),
    ("data text: missing source", lambda c: ["data", "text", str(c.root / "nothing.txt"), "--out", str(c.out / "ds")],
     ["nothing.txt", "does not exist"]),
    ("data midi: output in a read-only folder", lambda c: _read_only(c, ["data", "midi", str(Path(c.copy("tune")).parent),
                                                                        "--out", str(c.out / "ds"), "--no-progress"]),
     ["out/ds", "permission denied"]),
    ("data midi: --out is an existing file",
     lambda c: ["data", "midi", str(Path(c.copy("tune")).parent), "--out", str(c.out / "piece.mid"), "--no-progress"],
     ["piece.mid", "already exists"]),
    # ---- train
    ("train: missing data folder",
     lambda c: ["train", "--data", str(c.root / "nodata"), "--out", str(c.out / "run"), "--preset", "tiny"],
     ["nodata", "does not exist"]),
    ("train: data folder without meta.json",
     lambda c: ["train", "--data", str(c.out), "--out", str(c.out / "run"), "--preset", "tiny"], ["meta.json"]),
    ("train: run folder in a read-only folder", _train_read_only_out, ["run", "permission denied"]),
    ("train: --set without =",
     lambda c: ["train", "--data", str(_tiny_dataset(c)), "--out", str(c.out / "run"), "--set", "nonsense"],
     ["key=value"]),
]


def _snapshot(root: Path) -> dict:
    """Every file and folder under root, with the bytes of every file."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p))
        elif p.is_dir():
            out[rel] = ("dir", p.stat().st_mode & 0o777)
        else:
            with permissions_restored(p):
                out[rel] = ("file", p.read_bytes())
    return out


@contextlib.contextmanager
def permissions_restored(p: Path):
    mode = p.stat().st_mode & 0o777
    if mode & 0o400:
        yield
        return
    p.chmod(mode | 0o400)
    try:
        yield
    finally:
        p.chmod(mode)


def _run_with_file_size_limit(argv, limit: int):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
               PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1")

    def limit_file_size():   # SIGXFSZ keeps its default (kill): cadenza.cli must ignore it itself
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    proc = subprocess.run([sys.executable, "-m", "cadenza", *argv], env=env, capture_output=True, text=True,
                          preexec_fn=limit_file_size, timeout=300)
    return proc.returncode, proc.stderr


@pytest.mark.parametrize("build, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_fails_cleanly(build, words, model_dir, inputs, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "piece.mid").write_bytes(OLD_MIDI)
    (out / "piece.wav").write_bytes(OLD_WAV)
    ctx = Ctx(root=tmp_path, out=out, model=str(model_dir), inputs=inputs, monkeypatch=monkeypatch)
    argv = build(ctx)
    before = _snapshot(tmp_path)
    try:
        if ctx.kind == "ulimit":
            rc, err = _run_with_file_size_limit(argv, ctx.fsize)
        else:
            capsys.readouterr()
            with contextlib.ExitStack() as stack:
                for cm in ctx.during:
                    stack.enter_context(cm)
                rc = main(argv)
            err = capsys.readouterr().err
    finally:
        monkeypatch.undo()
        for p in [tmp_path, *tmp_path.rglob("*")]:
            if not p.is_symlink() and p.is_dir():
                p.chmod(p.stat().st_mode | 0o700)
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith("cadenza: error: "), err
    for word in words:
        assert word in lines[0].lower(), f"{word!r} not in {lines[0]!r}"
    after = _snapshot(tmp_path)
    new = sorted(set(after) - set(before))
    assert not new, f"left behind: {new}"
    changed = sorted(k for k in before if after.get(k) != before[k] and before[k][0] == "file")
    assert not changed, f"changed: {changed}"
    assert (out / "piece.mid").read_bytes() == OLD_MIDI and (out / "piece.wav").read_bytes() == OLD_WAV


def test_there_are_enough_cases_over_every_command():
    commands = {c[0].split(":")[0].split()[0] for c in CASES}
    assert len(CASES) >= 25
    assert {"compose", "continue", "harmonize", "predict", "render", "data", "train", "model"} <= commands


def test_the_readme_counts_the_cases():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Reliability"):]
    m = re.search(r"(\d+) cases", section)
    assert m and int(m.group(1)) == len(CASES), "update the case count in the README's Reliability section"


def test_a_bug_shows_its_traceback_and_asks_for_a_report(monkeypatch, capsys):
    """Not every exception becomes one line: a real bug keeps its traceback."""
    import cadenza.commands.models as music_cmd

    def broken(args):
        raise ZeroDivisionError("a bug")
    monkeypatch.setattr(music_cmd, "_models", broken)
    assert main(["models"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError: a bug" in err and "please report it" in err


@pytest.mark.parametrize("errno_name, words", [
    ("EACCES", "permission denied"), ("ENOENT", "does not exist"), ("ENOSPC", "no space left"),
    ("EFBIG", "file-size limit"), ("EISDIR", "is a folder"), ("EROFS", "read-only"), ("EIO", "input/output error"),
])
def test_any_os_error_from_a_command_is_one_line_naming_the_path(errno_name, words, monkeypatch, capsys):
    """OSErrors the library does not wrap still reach the user as one sentence."""
    import errno

    import cadenza.commands.models as music_cmd

    code = getattr(errno, errno_name)

    def failing(args):
        raise OSError(code, os.strerror(code), "/some/where/file.mid")
    monkeypatch.setattr(music_cmd, "_models", failing)
    assert main(["models"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "/some/where/file.mid" in err and words in err.lower()


@pytest.mark.skipif(not hasattr(__import__("signal"), "SIGXFSZ"), reason="no SIGXFSZ on this platform")
def test_the_cli_ignores_the_file_size_signal(tmp_path, capsys):
    """Past ``ulimit -f`` a write must fail with EFBIG (reported, cleaned up), not kill the process."""
    import signal

    before = signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    try:
        assert main(["models", "--dir", str(tmp_path)]) == 0
        assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGXFSZ, before)
