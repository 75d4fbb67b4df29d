"""``adopt``: hand rotator a key a person created in the Encord UI (New API key -> Add API
key downloads its private key), with either registrar. The work is
:func:`rotator.core.intake.receive`'s; this prints what happened, as a sentence or ``--json``.
"""

from __future__ import annotations

import argparse

import structlog

from rotator.cli.base import Command, add_account_argument, add_json_argument, engine_for, say
from rotator.cli.keys import read_key_file
from rotator.core import intake
from rotator.runtime.config import Settings
from rotator.runtime.render import short_id, when


def _arguments(p: argparse.ArgumentParser) -> None:
    add_account_argument(p)
    p.add_argument(
        "--private-key-file",
        required=True,
        metavar="F",
        help="the file the Encord UI downloaded (OpenSSH Ed25519 private key)",
    )
    p.add_argument(
        "--title",
        metavar="T",
        help="the title typed in the UI, when no key.registration_required gave one "
        "(manual registrar only: with the api registrar Encord's own title is used)",
    )
    add_json_argument(p)


def cmd_adopt(settings: Settings, args: argparse.Namespace) -> int:
    name = args.name
    text = read_key_file(args.private_key_file)
    engine = engine_for(settings, name)
    with structlog.contextvars.bound_contextvars(account=name):
        answer = intake.receive(engine.context, text, source="cli", title=args.title)
    if isinstance(answer, intake.IntakeRejected):
        say(
            args,
            {"event": "adopt.rejected", "account": name, "reason": answer.reason,
             "error": str(answer)},
            f"{name}: key not adopted ({answer.reason}): {answer}; nothing was changed",
        )
        return answer.exit_code
    record, old = answer.record, answer.replaced
    retires = old.retire_after if old is not None else None
    sentence = (
        f"{name}: adopted key '{record.title}' ({short_id(record.key_id)}) as the current "
        f"{intake.KIND} (expires {record.expires_at.date().isoformat()}); consumers reading "
        "Vault get it now"
    )
    if old is not None and retires is not None:
        then = "asks you to delete it" if settings.registrar == "manual" else "revokes it"
        sentence += (
            f"; the previous key '{old.title}' ({short_id(old.key_id)}) keeps working until "
            f"{when(retires)}, then rotator {then}"
        )
    say(
        args,
        {
            "event": "adopt.done",
            "account": name,
            "key_id": record.key_id,
            "key_hash": record.key_hash,
            "title": record.title,
            "vault_version": answer.vault_version,
            "old_key_id": old.key_id if old else None,
            "old_key_retires_at": retires.isoformat() if retires else None,
            "dropped_key_id": answer.dropped_key_id,
            "retired_key_id": answer.retired_key_id,
        },
        sentence,
    )
    return 0



ADOPT = Command(
    "adopt",
    "put in service a key a person created in the Encord UI (the file it downloaded)",
    _arguments,
    cmd_adopt,
)
