"""The vocabulary and the error tree: the label values operators' alerts and runbooks use are
spelled here literally, so a rename anywhere shows up as a failing test."""

from __future__ import annotations

import pytest

from rotator.core.errors import (
    ERROR_KINDS,
    AccessDenied,
    AmbiguousWrite,
    ConfigError,
    CorruptState,
    ErrorKind,
    KeyFormatError,
    NotFound,
    ProtocolError,
    RegistryRejected,
    RegistryUnavailable,
    RotatorError,
    StoreConflict,
    StoreUnavailable,
    error_kind,
)
from rotator.core.vocab import KEY_KINDS, ROTATION_RESULTS, Outcome


def test_label_values_are_the_documented_ones() -> None:
    """Error kinds, rotation outcomes and key kinds keep the names dashboards and alerts use."""
    assert [str(k) for k in ERROR_KINDS] == ["transient", "access_denied", "permanent", "internal"]
    assert [str(o) for o in ROTATION_RESULTS] == [
        "rotated",
        "failed",
        "blocked_by_cap",
        "rolled_back",
    ]
    assert KEY_KINDS == ("ssh-key", "api-key")


@pytest.mark.parametrize(
    ("exc", "kind", "peer"),
    [
        (StoreUnavailable("x"), "transient", "vault"),
        (RegistryUnavailable("x"), "transient", "encord"),
        (AmbiguousWrite("x"), "transient", "encord"),
        (AccessDenied("x", status=401), "access_denied", None),
        (NotFound("x"), "permanent", None),
        (RegistryRejected("x", code="KEY_LIMIT_REACHED"), "permanent", None),
        (CorruptState("x"), "permanent", None),
        (ProtocolError("x"), "permanent", None),
        (ConfigError("x"), "internal", None),
        (KeyFormatError("x"), "internal", None),
        (StoreConflict("x"), "internal", None),
        (RotatorError("x"), "internal", None),
        (ValueError("x"), "internal", None),
    ],
)
def test_each_error_class_carries_its_kind(exc: BaseException, kind: str, peer: str | None) -> None:
    """``check.failed``'s error_kind and the peer that did not answer come from the class."""
    assert error_kind(exc) == kind
    assert isinstance(error_kind(exc), ErrorKind)
    assert getattr(exc, "peer", None) == peer


def test_failure_outcomes() -> None:
    """`rotator rotate` exits 1 for exactly these outcomes."""
    assert {o.value for o in Outcome if o.is_failure} == {
        "failed",
        "blocked_by_cap",
        "not_bootstrapped",
    }
