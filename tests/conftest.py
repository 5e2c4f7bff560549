"""Suite-wide test settings, and ``require``: a dependency a test needs.

``require("miditok")`` imports and returns a module. Where it is missing, the test module is
skipped locally, but under CI (``CI=true``, as GitHub Actions and most CI services set) it
fails the suite instead: a broken install must show as failures, not as skipped tests.
Test modules use it as ``from conftest import require``.
"""

import importlib
import os

import pytest
import torch


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")


def require(module: str, reason: str | None = None):
    """Import ``module``; skip the calling test (module) locally if it is missing, fail under CI."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        why = f"{module} is not installed ({exc})" + (f"; {reason}" if reason else "")
        if in_ci():
            pytest.fail(f"CI=true and a test dependency is missing: {why}", pytrace=False)
        pytest.skip(why, allow_module_level=True)


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    # Tests run tiny models: many small ops, where a second thread only adds pool overhead
    # (and stalls badly when the machine is busy).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
