"""Ctrl-C and SIGTERM during training: finish the current step, save, exit."""

from __future__ import annotations

import signal
import threading


class StopRequest:
    """Ctrl-C / SIGTERM: finish the current step, save, exit. A second Ctrl-C quits at once."""

    def __init__(self, allow_force: bool = True):
        self.requested = False
        self.allow_force = allow_force  # False under torchrun: its agent forwards the same Ctrl-C again
        self._old = {}

    def install(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT and self.allow_force:
            raise KeyboardInterrupt
        self.requested = True

    def restore(self):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old.clear()
