"""Release hygiene: the licence, one version everywhere, the changelog, the lock, image labels.

The version is written once, in ``rotator/__init__.py``; setuptools, ``make image`` (and so the
image's labels), ``rotator --version``, the README and the changelog must all agree with it.
The wheel and ``make image`` tests run on a copy whose version was bumped, so a second,
forgotten place holding the version would show up as the old number.
"""

from __future__ import annotations

import ast
import email.parser
import hashlib
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from datetime import date
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import rotator
from tests.release import LOCK, REPO, make_image_command, read_lock
from tests.test_deploy import expand, stages

#: SHA-256 of https://www.apache.org/licenses/LICENSE-2.0.txt, the canonical text.
APACHE_2_0_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"

#: Where the image is built with the runtime stage's Python (python:3.11.x-slim-...).
_IMAGE_PYTHON = re.compile(r"python:(\d+\.\d+)\.\d+-slim")


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def bumped(version: str) -> str:
    """``version`` with its last release number raised by one (0.1.0 -> 0.1.1)."""
    parts = list(Version(version).release)
    parts[-1] += 1
    return ".".join(map(str, parts))


def git_head() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def copy_with_version(files: list[str], dest: Path, version: str) -> Path:
    """``files`` of the repository copied below ``dest``, ``__version__`` set to ``version``."""
    for name in files:
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(
                origin, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, dest / name)
    init = dest / "rotator" / "__init__.py"
    text, count = re.subn(
        r'(?m)^__version__ = "[^"]*"$', f'__version__ = "{version}"', init.read_text()
    )
    assert count == 1, "rotator/__init__.py writes __version__ once, as a plain literal"
    init.write_text(text)
    return dest


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


# --- one version -------------------------------------------------------------------------


def test_version_is_written_only_in_rotator_init() -> None:
    """pyproject.toml has no version of its own: setuptools reads ``rotator.__version__``."""
    data = pyproject()
    assert "version" not in data["project"]
    assert "version" in data["project"]["dynamic"]
    assert data["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "rotator.__version__"}
    # A plain literal, so setuptools and `make image` read it without importing rotator.
    tree = ast.parse((REPO / "rotator" / "__init__.py").read_text())
    literals = [
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and [getattr(t, "id", None) for t in node.targets] == ["__version__"]
        and isinstance(node.value, ast.Constant)
    ]
    assert literals == [rotator.__version__]
    assert str(Version(rotator.__version__)) == rotator.__version__, "a normalised PEP 440 version"


def test_cli_version_prints_rotators_version() -> None:
    """``rotator --version`` prints ``rotator <__version__>`` and exits 0."""
    done = subprocess.run(
        [sys.executable, "-m", "rotator", "--version"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"rotator {rotator.__version__}\n"


def test_wheel_metadata_takes_the_version_from_rotator_init_and_ships_the_license(
    tmp_path: Path,
) -> None:
    """A wheel built from the image's build context, version bumped, carries it and LICENSE."""
    builder, _ = stages()
    context = sorted(
        {source.rstrip("/") for args in builder.all("COPY") for source in args.split()[:-1]}
    )
    version = bumped(rotator.__version__)
    source = copy_with_version(context, tmp_path / "src", version)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
         "--wheel-dir", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("rotator-*.whl")
    assert wheel.name.startswith(f"rotator-{version}-")
    with zipfile.ZipFile(wheel) as archive:
        info = f"rotator-{version}.dist-info"
        metadata = email.parser.Parser().parsestr(archive.read(f"{info}/METADATA").decode())
        shipped = archive.read(f"{info}/licenses/LICENSE")
    assert metadata["Version"] == version
    assert metadata["License-Expression"] == pyproject()["project"]["license"]
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert shipped == (REPO / "LICENSE").read_bytes()


def test_make_image_builds_with_rotators_version_and_the_checked_out_commit() -> None:
    """``make image`` passes VERSION=__version__ and REVISION=HEAD, and tags rotator:VERSION."""
    command = make_image_command()
    assert command.build_args["VERSION"] == rotator.__version__
    assert command.build_args["REVISION"] == git_head()
    assert "SOURCE" in command.build_args
    assert command.tag == f"rotator:{rotator.__version__}"


def test_make_image_follows_a_version_bump_in_rotator_init(tmp_path: Path) -> None:
    """With only ``__version__`` bumped, ``make image`` builds and tags the new version."""
    version = bumped(rotator.__version__)
    copy = copy_with_version(["Makefile", "rotator/__init__.py"], tmp_path, version)
    command = make_image_command(copy)
    assert command.build_args["VERSION"] == version
    assert command.tag == f"rotator:{version}"


def test_image_labels_come_from_the_build_arguments_and_pyproject() -> None:
    """The runtime stage's OCI labels, as ``make image`` fills them, match the one sources."""
    _, runtime = stages()
    steps = [(step.keyword, step.args) for step in runtime.steps]
    (label_at,) = [i for i, (keyword, _) in enumerate(steps) if keyword == "LABEL"]
    declared = {args.partition("=")[0] for keyword, args in steps[:label_at] if keyword == "ARG"}
    assert {"VERSION", "REVISION", "SOURCE"} <= declared, "ARGs declared in the stage first"
    build_args = make_image_command().build_args
    labels = dict(pair.split("=", 1) for pair in shlex.split(steps[label_at][1]))
    labels = {key: expand(value, build_args) for key, value in labels.items()}
    project = pyproject()["project"]
    assert labels == {
        "org.opencontainers.image.title": project["name"],
        "org.opencontainers.image.description": project["description"],
        "org.opencontainers.image.version": rotator.__version__,
        "org.opencontainers.image.revision": git_head(),
        "org.opencontainers.image.source": build_args["SOURCE"],
        "org.opencontainers.image.licenses": project["license"],
    }


def test_every_documented_image_tag_is_rotators_version() -> None:
    """Each ``rotator:X.Y.Z`` in the README, docs/, the Dockerfile and deploy/ names
    __version__."""
    files = [
        REPO / "README.md",
        *sorted((REPO / "docs").glob("*.md")),
        REPO / "Dockerfile",
        *sorted((REPO / "deploy").rglob("*.y*ml")),
    ]
    tags = {
        f"{path.relative_to(REPO)}: {match[0]}"
        for path in files
        for match in re.finditer(r"\brotator:(\d+\.\d+\.\d+\S*?)(?=[\s`'\"]|$)", path.read_text())
    }
    shown = [t for t in tags if t.startswith("docs/operations.md")]
    assert shown, "docs/operations.md shows the image tag"
    wrong = sorted(t for t in tags if not t.endswith(f"rotator:{rotator.__version__}"))
    assert not wrong, wrong


# --- CHANGELOG ---------------------------------------------------------------------------

_KINDS = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def test_changelog_keeps_a_changelog_and_its_newest_release_is_rotators_version() -> None:
    """Unreleased first, then releases newest first with dates; the newest is __version__."""
    text = (REPO / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog\n") and "keepachangelog.com" in text
    sections = re.split(r"(?m)^## ", text)[1:]
    assert sections, "no release sections"
    headings = [section.splitlines()[0] for section in sections]
    assert headings[0] == "[Unreleased]"
    released: list[tuple[Version, date]] = []
    for heading in headings[1:]:
        match = re.fullmatch(r"\[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})", heading)
        assert match, f"not '[X.Y.Z] - YYYY-MM-DD': {heading!r}"
        released.append((Version(match[1]), date.fromisoformat(match[2])))
    assert released, "no released version"
    assert released == sorted(released, reverse=True), "newest first"
    assert str(released[0][0]) == rotator.__version__
    for heading, section in zip(headings, sections, strict=True):
        kinds = re.findall(r"(?m)^### (.+)$", section)
        assert kinds and set(kinds) <= _KINDS, f"{heading}: {kinds}"
        assert re.search(r"(?m)^- \S", section), f"{heading}: no entry"


# --- requirements.lock -------------------------------------------------------------------


def test_lock_pins_every_runtime_dependency_within_pyprojects_range_with_hashes() -> None:
    """Each runtime dependency is pinned to a version its range allows; every pin is hashed."""
    pins = read_lock(LOCK.read_text())
    image_python = {"python_version": "3.11", "python_full_version": "3.11.0",
                    "sys_platform": "linux", "platform_system": "Linux", "extra": ""}
    for line in pyproject()["project"]["dependencies"]:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(image_python):
            continue
        pin = pins.get(canonicalize_name(req.name))
        assert pin is not None, f"{req.name} is not in the lock"
        assert req.specifier.contains(pin.version, prereleases=True), f"{pin} outside {req}"
    assert pins and all(pin.hashes for pin in pins.values())


def test_lock_is_made_by_make_lock_for_the_images_python_on_linux() -> None:
    """The lock says ``make lock`` made it, and that target resolves for the image's Python."""
    assert "#    make lock\n" in LOCK.read_text().split("\n\n")[0]
    makefile = (REPO / "Makefile").read_text().replace("\\\n", " ")
    (recipe,) = re.findall(r"(?m)^lock:.*\n\t(.+)$", makefile)
    words = recipe.split()
    _, runtime = stages()
    match = _IMAGE_PYTHON.match(runtime.base)
    assert match, runtime.base
    assert words[1:4] == ["pip", "compile", "pyproject.toml"], recipe
    assert "--generate-hashes" in words
    assert words[words.index("--python-version") + 1] == match[1]
    assert words[words.index("--python-platform") + 1] == "linux"
    assert words[words.index("--output-file") + 1] == LOCK.name
