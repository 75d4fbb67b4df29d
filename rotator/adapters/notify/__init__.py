"""Telling a person: a small JSON message to ``ROTATOR_NOTIFY_URL`` when something needs one.

The message is Slack-compatible (Slack's incoming webhooks read ``text``) and carries the
same facts as structured fields for any other receiver::

    {"text": "...", "event": "key.registration_required", "severity": "warning",
     "service": "rotator", "account": "ml-prod", "kind": "ssh-key", "key_id": "9f2c...",
     "title": "rotator-2026-03-02", "public_key": "ssh-ed25519 AAAA...", "hint": "..."}

Events (:data:`EVENTS`): ``key.registration_required`` and ``key.revocation_required``
(manual mode: a person adds or removes a key in Encord), ``rotation.failed`` (a rotation ended
with outcome ``failed``), ``rotation.blocked_by_cap`` and ``key.expiring_soon``.

What it promises:

- **Never blocks a rotation.** :meth:`Notifier.notify` checks the message, puts it on a
  bounded queue and returns at once; one worker thread sends. When the queue is full the
  oldest message is dropped (and counted).
- **Bounded in time.** One message, retries and back-off waits included, ends within
  :attr:`NotifyBounds.deadline_seconds`: every socket operation gets only what is left of that
  deadline (so a receiver dripping one byte a second cannot hold it), and the answer is read
  up to :attr:`NotifyBounds.max_answer_bytes`, then dropped.
- **Retried a little:** connection failures, 429 and 5xx, up to :attr:`NotifyBounds.attempts`
  times with doubling waits. Redirects are never followed (a 3xx is a failure).
- **Never carries a secret.** The payload is built from an allow-list of fields
  (:class:`Notice`), each of a checked shape; a value that looks like a private key, a token,
  a bearer credential, a webhook URL or a secret rotator handles is refused (``notify.refused``,
  naming the field, never the value) and nothing is sent.
- **The URL is a secret** (a Slack webhook's path is its credential): logs, errors and
  ``repr`` show only its scheme and host. Plain ``http`` is refused except to a loopback host.
- **Deduplicated:** the same (event, account, key_id) goes out at most once per
  :attr:`NotifyBounds.dedup`; manual mode repeats its request on every check. A message that
  could not be delivered (failed, or dropped from the queue) may go out again at once.

Logs: ``notify.sent``, ``notify.failed`` (``reason``: ``connect``, ``timeout``,
``status_<code>``, ``redirect_refused``, ``error_<ExceptionName>``), ``notify.dropped``,
``notify.refused``; each with ``target`` (scheme and host), never the URL.

The package: :mod:`.notice` (the message, its events and the secret check), :mod:`.target`
(the URL), :mod:`.bounds` (limits and counts), :mod:`.delivery` (one message over HTTP) and
:mod:`.notifier` (queue, worker, deduplication).
"""

from rotator.adapters.notify.bounds import NotifyBounds, NotifyStats
from rotator.adapters.notify.notice import EVENTS, Notice, Severity, looks_secret
from rotator.adapters.notify.notifier import Notifier
from rotator.adapters.notify.target import NotifyTarget, parse_notify_url

__all__ = [
    "EVENTS",
    "Notice",
    "NotifyBounds",
    "NotifyStats",
    "NotifyTarget",
    "Notifier",
    "Severity",
    "looks_secret",
    "parse_notify_url",
]
