"""A stop of the engine between two outside calls, as a crash would stop it."""

from __future__ import annotations


class SimulatedCrash(BaseException):
    """Raised by test hooks and fakes to stop the engine between two outside calls. A
    BaseException, so no ``except Exception`` on the way can swallow it."""
