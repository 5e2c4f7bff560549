"""Cadenza's own C++ attention kernels: compiled on first use, cached, optional.

``load()`` returns the compiled extension module, or None where it cannot be had (no
compiler, a failed build, ``CADENZA_NO_KERNELS=1``); then it warns once and callers use
the flash-kernel path. The build lives in ``$CADENZA_CACHE`` (default: the user cache
directory, e.g. ``~/.cache/cadenza``) under ``kernels/<key>``, where the key hashes the
source, the compiler flags, torch's version and the CPU's instruction-set flags, so a
changed source or another machine never loads a stale build. A cached build is imported
directly (milliseconds); only a missing one goes through ``torch.utils.cpp_extension``
(tens of seconds, once).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.machinery
import importlib.util
import os
import platform
import sys
import warnings
from pathlib import Path

import torch

NAME = "cadenza_sparse_attn"
SOURCE = Path(__file__).with_name("sparse_attn.cpp")
CFLAGS = ["-O3", "-march=native", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math"]


@functools.lru_cache(maxsize=None)
def openmp_flags() -> tuple[str, ...]:
    """("-fopenmp",) where torch runs its threads on GNU OpenMP (Linux wheels), else ().

    at::parallel_for is a header template: without -fopenmp the compiler leaves _OPENMP
    undefined, ATen's INTRA_OP_PARALLEL with it, and every parallel_for in the kernel runs on
    one thread. With it the extension links libgomp.so.1, which the loader resolves to the copy
    torch already loaded (same soname), so torch.set_num_threads governs the kernel's threads
    too. Where torch uses another OpenMP runtime, a second one would not follow it: no flag."""
    if not (sys.platform.startswith("linux") and torch.backends.openmp.is_available()):
        return ()
    try:
        with open("/proc/self/maps") as fh:
            gomp = any("libgomp" in line for line in fh)
    except OSError:
        return ()
    return ("-fopenmp",) if gomp else ()


_state: dict = {}


def cache_root() -> Path:
    env = os.environ.get("CADENZA_CACHE")
    if env:
        return Path(env).expanduser()
    try:
        import platformdirs
        return Path(platformdirs.user_cache_dir("cadenza"))
    except ImportError:
        return Path.home() / ".cache" / "cadenza"


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def build_key() -> str:
    """Hash of the source, flags, torch, Python and CPU (computed once per source file)."""
    return _build_key(SOURCE)


@functools.lru_cache(maxsize=None)
def _build_key(source: Path) -> str:
    h = hashlib.sha256()
    for part in (source.read_bytes(), " ".join(CFLAGS + list(openmp_flags())).encode(), torch.__version__.encode(),
                 sys.version.encode(), platform.machine().encode(), _cpu_flags().encode()):
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def build_dir() -> Path:
    return cache_root() / "kernels" / build_key()


def _import_built(path: Path):
    loader = importlib.machinery.ExtensionFileLoader(NAME, str(path))
    spec = importlib.util.spec_from_file_location(NAME, str(path), loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _build(directory: Path):
    from torch.utils import cpp_extension  # imported only when a build is needed
    directory.mkdir(parents=True, exist_ok=True)
    # ninja from PyPI (a dependency) lives in the environment's bin folder, which is not on
    # PATH when Python runs without an activated environment
    extra = [str(Path(sys.executable).parent)]
    try:
        import ninja
        extra.insert(0, ninja.BIN_DIR)
    except (ImportError, AttributeError):
        pass
    os.environ["PATH"] = os.pathsep.join(extra + [os.environ.get("PATH", "")])
    omp = list(openmp_flags())
    if omp:
        try:
            return cpp_extension.load(NAME, [str(SOURCE)], build_directory=str(directory),
                                      extra_cflags=CFLAGS + omp, extra_ldflags=omp, verbose=False)
        except Exception as exc:  # noqa: BLE001 - a compiler without OpenMP: build it serial
            warnings.warn(f"cadenza's C++ kernel did not build with OpenMP ({type(exc).__name__}); "
                          "building it without threads", RuntimeWarning, stacklevel=4)
    return cpp_extension.load(NAME, [str(SOURCE)], build_directory=str(directory),
                              extra_cflags=CFLAGS, verbose=False)


def _load():
    if os.environ.get("CADENZA_NO_KERNELS", "").strip() not in ("", "0"):
        raise RuntimeError("CADENZA_NO_KERNELS is set")
    directory = build_dir()
    built = directory / f"{NAME}.so"
    if built.exists():
        try:
            return _import_built(built)
        except ImportError:
            pass  # a broken or partial build: rebuild below
    return _build(directory)


def load():
    """The extension module, or None (after one warning per process) where it is unavailable."""
    if "module" not in _state:
        try:
            _state["module"] = _load()
        except Exception as exc:  # noqa: BLE001 - any build failure means "use the fallback"
            _state["module"] = None
            _state["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
            warnings.warn(
                "cadenza's C++ attention kernel is unavailable, using the PyTorch flash-kernel "
                f"path instead ({_state['error']})", RuntimeWarning, stacklevel=3)
    return _state["module"]


def ready() -> bool:
    """Whether ``load`` costs nothing now: the kernel was already tried in this process, a
    build is in the cache (imported in milliseconds), or ``CADENZA_NO_KERNELS`` says at once
    that there is none (``load`` then warns and returns None)."""
    if "module" in _state or os.environ.get("CADENZA_NO_KERNELS", "").strip() not in ("", "0"):
        return True
    return (build_dir() / f"{NAME}.so").exists()


def loaded() -> bool:
    """Whether this process has loaded the kernel."""
    return _state.get("module") is not None


def available() -> bool:
    return load() is not None


def reset() -> None:
    """Forget the load attempt (tests use it to simulate a missing compiler)."""
    _state.clear()


def threaded() -> bool:
    """Whether the loaded kernel's ``at::parallel_for`` runs on several threads (built with OpenMP)."""
    module = load()
    return bool(module is not None and getattr(module, "threaded", lambda: False)())
