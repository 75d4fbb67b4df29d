"""Release hygiene: the licence."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

#: SHA-256 of https://www.apache.org/licenses/LICENSE-2.0.txt, the canonical text.
APACHE_2_0_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


# --- LICENSE -----------------------------------------------------------------------------


def test_license_file_is_the_canonical_apache_2_0_text() -> None:
    """LICENSE is byte for byte the Apache License 2.0 as the ASF publishes it."""
    text = (REPO / "LICENSE").read_bytes()
    assert b"Version 2.0, January 2004" in text and b"END OF TERMS AND CONDITIONS" in text
    assert hashlib.sha256(text).hexdigest() == APACHE_2_0_SHA256


def test_pyproject_declares_apache_2_0_and_ships_the_license_file() -> None:
    """The SPDX expression is Apache-2.0 and LICENSE is the one licence file in the metadata."""
    project = pyproject()["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
