"""The stream engine: every stream's soundtrack made in a process of its own.

Why: the server's event loop (hundreds of sockets, their JSON) and the stream decoder's Python
work (sampling, the grammar) each need most of a core, and in one process they take turns
under one interpreter lock. ``cadenza serve`` therefore starts engines (``EngineStreams``),
one per core (``EnginePool``: a new stream goes to the engine with the fewest and stays
there): each a child process (multiprocessing, spawned) that loads the model and the
preference store itself and runs a ``server.streams.LocalStreams``; the server calls it over
a pipe with the same calls (``open``, ``set_controls``, ``restart``, ``bar``, ``forget``). ``Bar`` objects and
exceptions come back pickled. Every ``STATUS_S`` the engine sends its decoder's ``status()``,
by which the server refuses a new stream while the engine is strained (``strained``); a dead
engine refuses every new stream, and the calls waiting on it fail (the streams close with 1011).

Before it says it is ready, an engine plays 32 throwaway streams
(``LocalStreams.warm_up``, four bars), so its strain rule starts from a measured speed.

Deadlines are ``time.monotonic()`` values: one clock for every process on the machine.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import pickle
import threading
import time

from cadenza.errors import CadenzaError
from cadenza.server.batcher import settle_soon, strained_by

STATUS_S = 0.1          # how often the engine sends its decoder's status
STALE_S = 3.0           # a status older than this: the engine is stuck, refuse new streams
READY_S = 180.0         # how long the engine may take to load the model
log = logging.getLogger("cadenza.server")


class EngineFailed(CadenzaError):
    """The stream engine process could not start, or has stopped."""


class EngineStreams:
    """``LocalStreams``' calls, made in the engine process (see the module docstring)."""

    def __init__(self, model_dir, prefs_path=None, preferences: bool = True, wait: bool = True):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")     # never fork a process that runs threads
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=engine_main, name="cadenza-stream-engine", daemon=True,
                                args=(child, str(model_dir), None if prefs_path is None else str(prefs_path),
                                      preferences))
        self.proc.start()
        child.close()
        self._waiting: dict[int, tuple] = {}
        self._ids = itertools.count()
        self._send_lock = threading.Lock()
        self._status: tuple[float, dict] | None = None
        self.dead: str | None = None
        if wait:
            self.wait()

    def wait(self) -> None:
        """Wait until the engine has loaded the model (``EngineFailed`` if it cannot)."""
        if not self.conn.poll(READY_S):
            self.proc.kill()
            raise EngineFailed(f"the stream engine did not load the model within {READY_S:g} s")
        try:
            first = self.conn.recv()
        except (EOFError, OSError):
            self.proc.join(5)
            raise EngineFailed(f"the stream engine stopped while starting (exit code {self.proc.exitcode}; "
                               f"a script that starts one needs an 'if __name__ == \"__main__\":' guard)") from None
        if first[0] != "ready":
            self.proc.join(5)
            raise EngineFailed(f"the stream engine could not start: {first[1]}")
        self.where = first[1]
        self.reader = threading.Thread(target=self._read, name="cadenza-engine-reader", daemon=True)
        self.reader.start()

    # ---- the pipe ------------------------------------------------------------------------
    def _send(self, msg) -> None:
        with self._send_lock:
            self.conn.send(msg)

    def _read(self) -> None:
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError) as exc:
                self.dead = f"the stream engine stopped ({type(exc).__name__})"
                for fut, loop in list(self._waiting.values()):
                    _settle(fut, loop, False, EngineFailed(self.dead))
                return
            if msg[0] == "status":
                self._status = (time.monotonic(), msg[1])
                continue
            _, rid, ok, value = msg
            entry = self._waiting.pop(rid, None)
            if entry is not None:
                _settle(*entry, ok, value)

    async def _call(self, op: str, *args):
        if self.dead:
            raise EngineFailed(self.dead)
        loop = asyncio.get_running_loop()
        rid, fut = next(self._ids), loop.create_future()
        self._waiting[rid] = (fut, loop)
        try:
            self._send(("call", rid, op, args))
            return await fut
        except asyncio.CancelledError:
            if not self.dead:
                self._send(("cancel", rid))
            raise
        finally:
            self._waiting.pop(rid, None)

    # ---- LocalStreams' calls -------------------------------------------------------------
    async def open(self, sid: int, listener, changes: dict, seed) -> None:
        await self._call("open", sid, listener, changes, seed)

    async def set_controls(self, sid: int, changes: dict) -> None:
        await self._call("set_controls", sid, changes)

    async def restart(self, sid: int, at: int, fresh: bool, deadline: float | None = None) -> float:
        return await self._call("restart", sid, at, fresh, deadline)

    async def bar(self, sid: int, deadline: float, playing: bool):
        return await self._call("bar", sid, deadline, playing)

    def forget(self, sid: int) -> None:
        if not self.dead:
            self._send(("forget", sid))

    def strained(self, streams: int) -> bool:
        status = self._status
        if self.dead or status is None or time.monotonic() - status[0] > STALE_S:
            return True
        return strained_by(status[1], streams)

    def close(self) -> None:
        if not self.dead:
            try:
                self._send(("stop",))
            except OSError:
                pass
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()


class EnginePool:
    """Several engines, one per core: a new stream goes to the one with the fewest streams and
    stays there; a new stream is refused only when that one is strained."""

    def __init__(self, n: int, model_dir, prefs_path=None, preferences: bool = True):
        self.engines = [EngineStreams(model_dir, prefs_path, preferences, wait=False) for _ in range(n)]
        for e in self.engines:      # they load side by side
            e.wait()
        self.where = self.engines[0].where
        self._of: dict[int, EngineStreams] = {}
        self._count = {id(e): 0 for e in self.engines}

    def _next(self) -> EngineStreams:
        return min(self.engines, key=lambda e: (e.dead is not None, self._count[id(e)]))

    async def open(self, sid: int, listener, changes: dict, seed) -> None:
        eng = self._of[sid] = self._next()
        self._count[id(eng)] += 1
        await eng.open(sid, listener, changes, seed)

    async def set_controls(self, sid: int, changes: dict) -> None:
        await self._of[sid].set_controls(sid, changes)

    async def restart(self, sid: int, at: int, fresh: bool, deadline: float | None = None) -> float:
        return await self._of[sid].restart(sid, at, fresh, deadline)

    async def bar(self, sid: int, deadline: float, playing: bool):
        return await self._of[sid].bar(sid, deadline, playing)

    def forget(self, sid: int) -> None:
        eng = self._of.pop(sid, None)
        if eng is not None:
            self._count[id(eng)] -= 1
            eng.forget(sid)

    def strained(self, streams: int) -> bool:
        eng = self._next()
        return eng.strained(self._count[id(eng)])

    def close(self) -> None:
        for e in self.engines:
            e.close()


def _settle(fut, loop, ok: bool, value) -> None:
    settle_soon(loop, [(fut, None, value) if ok else (fut, value, None)])


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a RuntimeError that says what it was."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:   # noqa: BLE001 - any exception that cannot travel
        return RuntimeError(f"{type(exc).__name__}: {exc}")


# ---- the engine process ------------------------------------------------------------------
def engine_main(conn, model_dir: str, prefs_path, preferences: bool) -> None:
    """The child process: load, say ``ready``, serve calls until ``stop`` or the pipe closes."""
    try:
        import torch

        from cadenza.music.load import load_model
        from cadenza.server.prefs import Preferences, PrefsError
        from cadenza.server.streams import LocalStreams

        torch.set_num_threads(1)
        mm = load_model(model_dir)
        prefs = None
        if preferences:
            try:
                prefs = Preferences(prefs_path)
            except PrefsError as exc:
                log.warning("the stream engine keeps no preferences: %s", exc)
        streams = LocalStreams(mm, prefs)
    except Exception as exc:   # noqa: BLE001 - said to the server, which says it to the user
        conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    try:
        asyncio.run(_serve(conn, streams, mm.version))
    finally:
        streams.close()


async def _serve(conn, streams, version: str) -> None:
    try:
        await streams.warm_up()     # a measured speed and allocated caches before the first listener
    except Exception as exc:   # noqa: BLE001 - said to the server, which says it to the user
        conn.send(("failed", f"warming up: {type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", version))
    loop = asyncio.get_running_loop()
    tasks: dict[int, asyncio.Task] = {}
    done = asyncio.Event()

    async def run(rid: int, op: str, args) -> None:
        try:
            reply = ("reply", rid, True, await getattr(streams, op)(*args))
        except asyncio.CancelledError:
            return
        except Exception as exc:   # noqa: BLE001 - the caller's error, handed back to it
            reply = ("reply", rid, False, _portable(exc))
        finally:
            tasks.pop(rid, None)
        conn.send(reply)

    def on_message(msg) -> None:
        kind = msg[0]
        if kind == "call":
            _, rid, op, args = msg
            tasks[rid] = loop.create_task(run(rid, op, args))
        elif kind == "cancel" and msg[1] in tasks:
            tasks[msg[1]].cancel()
        elif kind == "forget":
            streams.forget(msg[1])
        elif kind == "stop":
            done.set()

    def read() -> None:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):   # the server has gone
                loop.call_soon_threadsafe(done.set)
                return
            loop.call_soon_threadsafe(on_message, msg)

    threading.Thread(target=read, name="cadenza-engine-pipe", daemon=True).start()
    while not done.is_set():
        conn.send(("status", streams.status()))
        try:
            await asyncio.wait_for(done.wait(), STATUS_S)
        except asyncio.TimeoutError:
            pass


__all__ = ["EnginePool", "EngineStreams", "EngineFailed", "engine_main"]
