"""A local HTTP stand-in for Encord, for tests and the demo; the daemon never imports it.

It speaks Part 1 (bearer token, organisation tags, Bearer auth) and Part 2 (key management)
of the Encord contract, checks every signature as Encord does, enforces key caps, duplicate
refusal and authorisation, journals changes, persists state, and injects faults on demand.
"""

from rotator.dev.sandbox.faults import Faults
from rotator.dev.sandbox.seed import AccountSeed, SeedConfig
from rotator.dev.sandbox.server import Sandbox

__all__ = ["AccountSeed", "Faults", "Sandbox", "SeedConfig"]
