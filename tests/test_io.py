"""Atomic writes: all or nothing, ordinary permissions."""

import os
import stat

import pytest

from cadenza.io import atomic_path, write_text_atomic


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary left behind
    write_text_atomic(target, "new")
    assert target.read_text() == "new"


def test_atomic_files_get_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


# --------------------------------------------------------------------------- FileTransaction
from cadenza.errors import CadenzaError, WriteError  # noqa: E402
from cadenza.io import FileTransaction  # noqa: E402


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_transaction_writes_all_files_at_the_end(tmp_path):
    (tmp_path / "a.mid").write_bytes(b"old a")
    with FileTransaction() as txn:
        txn.write_bytes(tmp_path / "a.mid", b"new a")
        txn.write_text(tmp_path / "b.json", "{}")
        assert _files(tmp_path)["a.mid"] == b"old a" and "b.json" not in _files(tmp_path)   # nothing yet
    assert _files(tmp_path) == {"a.mid": b"new a", "b.json": b"{}"}


def test_a_failed_transaction_changes_nothing(tmp_path):
    (tmp_path / "a.mid").write_bytes(b"old a")
    with pytest.raises(RuntimeError):
        with FileTransaction() as txn:
            txn.write_bytes(tmp_path / "a.mid", b"new a")
            txn.write_bytes(tmp_path / "b.wav", b"new b")
            raise RuntimeError("the render failed")
    assert _files(tmp_path) == {"a.mid": b"old a"}     # and no temporary left


def test_a_file_that_does_not_check_out_stops_the_whole_transaction(tmp_path):
    def refuse(tmp):
        raise WriteError(f"{tmp} did not read back")

    with pytest.raises(CadenzaError, match="did not read back"):
        with FileTransaction() as txn:
            txn.write_bytes(tmp_path / "a.mid", b"a")
            txn.write_bytes(tmp_path / "b.png", b"not a png", check=refuse)
    assert _files(tmp_path) == {}


def test_a_rename_failing_half_way_puts_the_replaced_files_back(tmp_path, monkeypatch):
    import cadenza.io

    (tmp_path / "a.mid").write_bytes(b"old a")
    (tmp_path / "b.wav").write_bytes(b"old b")
    real = os.replace
    calls = []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 2 and str(dst).endswith("b.wav"):
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(cadenza.io.os, "replace", flaky)
    with pytest.raises(WriteError, match="b.wav") as info:
        with FileTransaction() as txn:
            txn.write_bytes(tmp_path / "a.mid", b"new a")
            txn.write_bytes(tmp_path / "b.wav", b"new b")
            txn.write_bytes(tmp_path / "c.json", b"new c")
    assert "no space left" in str(info.value)
    assert _files(tmp_path) == {"a.mid": b"old a", "b.wav": b"old b"}   # a.mid restored, no backups left


def test_a_transaction_does_not_create_folders(tmp_path):
    with pytest.raises(WriteError, match="missing") as info:
        with FileTransaction() as txn:
            txn.write_bytes(tmp_path / "missing" / "a.mid", b"a")
    assert "\n" not in str(info.value) and not (tmp_path / "missing").exists()
