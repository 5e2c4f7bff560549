"""Real `cadenza serve` processes for the multi-process tests: started on free loopback
ports, ready once ``/api/health`` answers, stopped after."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from pg_fixtures import free_port


@contextlib.contextmanager
def serving(n: int, prefs: str, *extra: str):
    """``n`` server processes sharing the preferences ``prefs``; yields their base URLs."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ports = [free_port() for _ in range(n)]
    procs = [subprocess.Popen([sys.executable, "-m", "cadenza.cli", "serve", "--port", str(p), "--prefs", prefs,
                               "--workers", "1", *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=env) for p in ports]
    try:
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        deadline = time.monotonic() + 90
        for url, proc in zip(urls, procs):
            while True:
                try:
                    if httpx.get(f"{url}/api/health", timeout=1).json()["preferences"] == "on":
                        break
                except (httpx.HTTPError, KeyError, ValueError):
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"cadenza serve did not start (or runs without preferences): {proc.stdout.read()}"
                                if proc.poll() is not None else "cadenza serve did not start within 90 s")
                time.sleep(0.1)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def first_segment(ws) -> dict:
    """The ``segment`` message that opens a stream (after ``start``)."""
    for _ in range(50):
        m = json.loads(ws.recv(timeout=20))
        if m["type"] == "segment":
            return m
    raise AssertionError("no segment message")


def until(ws, kind: str) -> dict:
    for _ in range(200):
        m = json.loads(ws.recv(timeout=20))
        if m["type"] == kind:
            return m
    raise AssertionError(f"no {kind} message")
