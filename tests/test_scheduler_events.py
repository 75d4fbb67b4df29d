"""APScheduler's incidents become stable events (issue: every line an event): a skipped run
is ``scheduler.job_skipped`` with the account, never APScheduler's sentence as the event name."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from rotator.runtime import logs
from rotator.runtime.daemon import watch_jobs


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The process's logging, configured as the daemon does (JSON), into a buffer."""
    stream = io.StringIO()
    logs.configure(fmt="json", level="info", stream=stream)
    try:
        yield stream
    finally:
        logs.reset()


def _events(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def _scheduler() -> BackgroundScheduler:
    # The daemon's job defaults, so the scheduler behaves as it does in production.
    return BackgroundScheduler(
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        timezone=UTC,
    )


def test_a_run_skipped_while_the_last_still_runs_is_one_stable_event(
    json_lines: io.StringIO,
) -> None:
    """A check still running when its next run comes: ``scheduler.job_skipped`` with the
    account and a reason; no line whose event is APScheduler's free text."""
    scheduler = _scheduler()
    watch_jobs(scheduler)
    release = threading.Event()
    scheduler.add_job(
        lambda: release.wait(5), "interval", seconds=0.1, id="check:alpha",
        next_run_time=datetime.now(UTC),
    )
    scheduler.start()
    try:
        end = time.monotonic() + 5
        while time.monotonic() < end and not any(
            e.get("event") == "scheduler.job_skipped" for e in _events(json_lines)
        ):
            time.sleep(0.05)
    finally:
        release.set()
        scheduler.shutdown(wait=True)
    events = _events(json_lines)
    skipped = [e for e in events if e.get("event") == "scheduler.job_skipped"]
    assert skipped, events
    assert skipped[0]["account"] == "alpha" and skipped[0]["reason"] == "still_running"
    assert not [e for e in events if "maximum number of running instances" in str(e)]
    assert all(str(e["event"]).replace("_", ".").replace(".", "").isalnum() for e in events)


def test_a_job_that_raises_is_one_stable_event_without_its_text(json_lines: io.StringIO) -> None:
    """A job's uncaught exception: ``scheduler.job_crashed`` with the type, never the text."""
    scheduler = _scheduler()
    watch_jobs(scheduler)
    done = threading.Event()

    def boom() -> None:
        try:
            raise ValueError("peer said: s.secretsecretsecretsecret")
        finally:
            done.set()

    scheduler.add_job(boom, "date", run_date=datetime.now(UTC), id="vault:maintain")
    scheduler.start()
    try:
        assert done.wait(5)
        time.sleep(0.2)
    finally:
        scheduler.shutdown(wait=True)
    events = _events(json_lines)
    crashed = [e for e in events if e.get("event") == "scheduler.job_crashed"]
    assert crashed == [crashed[0]] and crashed[0]["error_type"] == "ValueError"
    assert crashed[0]["job"] == "vault:maintain"
    assert "secretsecret" not in json_lines.getvalue()
    assert not [e for e in events if "raised an exception" in str(e.get("event"))]
