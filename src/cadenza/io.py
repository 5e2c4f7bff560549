"""Atomic file writing: a temporary file in the same folder, fsync, then rename; a file's sha256."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path


def file_sha256(path) -> str | None:
    """The hex sha256 of a file's bytes; None if it cannot be read."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file ordinary permissions
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        with contextlib.suppress(OSError):
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def write_text_atomic(path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def save_figure(fig, path, dpi: int = 110) -> Path:
    """Write a matplotlib figure as PNG atomically, then close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return Path(path)


# --------------------------------------------------------------------------- several files as one
def os_error_sentence(exc: OSError, path=None, doing: str = "access") -> str:
    """One sentence for an operating-system error: which path, what went wrong, what to do.

    ``path`` overrides the file the error names (a write error often names none);
    ``doing`` is the verb: "read", "write", "access"..."""
    import errno

    if path is not None:
        what = str(path)
    elif exc.filename is not None and exc.filename2 is not None:
        what = f"{exc.filename} -> {exc.filename2}"
    elif exc.filename is not None:
        what = str(exc.filename)
    else:
        what = "a file"
    code = exc.errno
    if code in (errno.EACCES, errno.EPERM):
        return f"cannot {doing} {what}: permission denied; check its permissions (and its folder's) or use another path"
    if code == errno.ENOENT:
        return f"{what} does not exist (or its folder does not); check the path or create the folder first"
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return f"cannot {doing} {what}: no space left on the device; free some space or write somewhere else"
    if code == errno.EFBIG:
        return (f"cannot {doing} {what}: it would pass this process's file-size limit (`ulimit -f`); "
                f"raise the limit or write a smaller file")
    if code == errno.EISDIR:
        return f"{what} is a folder; name a file instead"
    if code == errno.ENOTDIR:
        return f"part of {what} is a file, not a folder; check the path"
    if code == errno.EROFS:
        return f"cannot {doing} {what}: it is on a read-only file system; use somewhere else"
    if code == errno.EEXIST:
        return f"{what} already exists where a new folder or file was to be made; choose another path"
    if code == errno.ENAMETOOLONG:
        return f"the name {what} is too long for the file system; choose a shorter one"
    reason = " ".join((exc.strerror or str(exc) or type(exc).__name__).split()).rstrip(".")
    return f"cannot {doing} {what}: {reason}"


def check_writable_folder(folder) -> Path:
    """Raise OSError (as the OS would report it) unless ``folder`` exists and a file can be
    created in it. It really creates and removes a temporary file: permission bits alone do
    not tell (root, read-only mounts, ACLs)."""
    import errno

    folder = Path(folder) if str(folder) else Path(".")
    if not folder.exists():
        raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), str(folder))
    if not folder.is_dir():
        raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
    fd, tmp = tempfile.mkstemp(prefix=".cadenza-write-check.", suffix=".tmp", dir=folder)
    os.close(fd)
    os.unlink(tmp)
    return folder


class FileTransaction:
    """Write several files as one: all of them appear, or none does.

    Each file is prepared as a temporary file in its destination's folder (so the final
    rename stays on one file system), checked, fsynced, and only when every file is ready
    are they renamed into place. Any failure before that removes the temporaries and leaves
    every existing file byte-identical; if a rename itself fails half-way, the files already
    replaced are put back from hard-link backups::

        with FileTransaction() as txn:
            txn.write("out.mid", lambda tmp: score.dump_midi(str(tmp)), check=midi_reads_back)
            txn.write("out.wav", write_wav_to)
        # here both files are in place (or an exception was raised and neither changed)

    Destination folders are not created: a missing folder is an error, reported before
    anything is written. OSErrors are re-raised as ``cadenza.errors.WriteError`` (a
    ``CadenzaError``: one sentence naming the destination, the OSError as ``cause``).
    """

    def __init__(self):
        self._files: list[tuple[Path, Path, object]] = []   # (destination, temporary, check)
        self.committed = False

    # ---- preparing ---------------------------------------------------------------
    def path(self, dest, check=None) -> Path:
        """A new empty temporary file for ``dest``; write it yourself. ``check(tmp)`` runs at
        commit (raise to refuse the file)."""
        dest = Path(dest)
        if any(d == dest for d, _, _ in self._files):
            raise ValueError(f"{dest} is already part of this transaction")
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent if str(dest.parent) else ".")
            os.close(fd)
            os.chmod(tmp, 0o666 & ~_umask())
        except OSError as exc:
            raise self._error(exc, dest) from None
        self._files.append((dest, Path(tmp), check))
        return Path(tmp)

    def write(self, dest, writer, check=None) -> Path:
        """Prepare ``dest`` by calling ``writer(tmp_path)``; OSErrors name ``dest``."""
        tmp = self.path(dest, check)
        try:
            writer(tmp)
        except OSError as exc:
            raise self._error(exc, dest) from None
        return Path(dest)

    def write_bytes(self, dest, data: bytes, check=None) -> Path:
        return self.write(dest, lambda tmp: Path(tmp).write_bytes(data), check)

    def write_text(self, dest, text: str, check=None) -> Path:
        return self.write_bytes(dest, text.encode("utf-8"), check)

    def temporary(self, dest) -> Path:
        """The temporary file prepared for ``dest`` (until the commit renames it)."""
        dest = Path(dest)
        for d, tmp, _ in self._files:
            if d == dest:
                return tmp
        raise KeyError(str(dest))

    @property
    def destinations(self) -> list[Path]:
        return [d for d, _, _ in self._files]

    # ---- committing --------------------------------------------------------------
    def commit(self) -> list[Path]:
        """Check and fsync every temporary file, then rename all into place."""
        if self.committed:
            return self.destinations
        current = None
        try:
            for dest, tmp, check in self._files:
                current = dest
                if check is not None:
                    check(tmp)
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
        except OSError as exc:
            self.abort()
            raise self._error(exc, current) from None
        except BaseException:
            self.abort()
            raise
        self._rename_all()
        self.committed = True
        return self.destinations

    def _rename_all(self) -> None:
        backups: list[tuple[Path, Path | None]] = []   # (dest, backup or None when dest was new)
        done: list[Path] = []
        current = None
        try:
            for dest, tmp, _ in self._files:
                current = dest
                backup = None
                if dest.exists():
                    backup = tmp.with_name(tmp.name[:-len(".part")] + ".old")
                    try:
                        os.link(dest, backup)
                    except OSError:
                        backup = None   # a file system without hard links: no undo for this one
                backups.append((dest, backup))
                os.replace(tmp, dest)
                done.append(dest)
        except BaseException as exc:
            for dest, backup in reversed(backups[:len(done)]):
                with contextlib.suppress(OSError):
                    if backup is not None:
                        os.replace(backup, dest)
                    else:
                        os.unlink(dest)
            for _, backup in backups:
                if backup is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(backup)
            self.abort()
            if isinstance(exc, OSError):
                raise self._error(exc, current) from None
            raise
        for _, backup in backups:
            if backup is not None:
                with contextlib.suppress(OSError):
                    os.unlink(backup)
        for folder in {d.parent for d in self.destinations}:
            with contextlib.suppress(OSError):
                dir_fd = os.open(folder, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)

    def abort(self) -> None:
        """Remove every temporary file (destinations are not touched)."""
        for _, tmp, _ in self._files:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def __enter__(self) -> "FileTransaction":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
        return False

    @staticmethod
    def _error(exc: OSError, dest) -> Exception:
        from cadenza.errors import WriteError

        return WriteError(os_error_sentence(exc, dest, doing="write"), path=dest, cause=exc)
