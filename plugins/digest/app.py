"""The digest agent: one `core/note` per day listing what came in that day.

Input (optional): {"day": "YYYY-MM-DD"}; default: today (UTC). It reads the
`core/message`, `core/document` and `core/task` records created that day and
writes a note of type `digest` titled "Digest for DAY": how many of each,
then one line per record (a message's subject and sender, a document's
title, a task's title and state). The note's provenance names every record
it lists, and it is linked `derived-from` each of them, so the operator can
follow it back. Its identity is ("digest", DAY): a second run the same day
updates that note (a new version) when something new came in, and writes
nothing when nothing did.
"""

import datetime
import json
import re

import wit_world
from componentize_py_types import Err
from wit_world.imports import actions, log, records, types

KINDS = [
    ("core/message", "messages"),
    ("core/document", "documents"),
    ("core/task", "tasks"),
]
# A page of a query, and the most records one digest reads and lists.
PAGE = 500
MOST_READ = 20_000
MOST_LISTED = 300
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def invalid(message: str) -> Err:
    return Err(types.Error_Invalid(message))


def the_day(trigger: types.Trigger) -> str:
    if not trigger.input:
        return datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    try:
        given = json.loads(trigger.input)
    except ValueError as e:
        raise invalid(f'input is not JSON ({e}); give {{"day": "YYYY-MM-DD"}}')
    if not isinstance(given, dict):
        raise invalid('input is a JSON object: {"day": "YYYY-MM-DD"}')
    day = given.get("day")
    if day is None:
        return datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    if not isinstance(day, str) or not DAY.match(day):
        raise invalid(f'"day" is a date like 2026-12-01, not {day!r}')
    try:
        datetime.date.fromisoformat(day)
    except ValueError:
        raise invalid(f"{day} is not a calendar day")
    return day


def created_on(kind: str, day: str) -> list:
    """The records of `kind` created on `day`, oldest first."""
    found, cursor, read = [], None, 0
    while True:
        page = records.query(kind, PAGE, cursor)
        read += len(page.records)
        found.extend(r for r in page.records if r.created_at.startswith(day))
        if page.next is None:
            return found
        if read >= MOST_READ:
            log.log(log.Level.WARN, f"read the first {MOST_READ} {kind} records only")
            return found
        cursor = page.next


def line(kind: str, body: dict) -> str:
    def text(key: str, default: str = "") -> str:
        value = body.get(key)
        return " ".join(str(value).split())[:200] if value else default

    if kind == "core/message":
        return f"- {text('subject', '(no subject)')} — from {text('from', 'unknown')}"
    if kind == "core/document":
        return f"- {text('title', text('path', '(untitled)'))}"
    return f"- {text('title', '(untitled)')} [{text('state', 'open')}]"


def digest_text(day: str, found: dict) -> str:
    counts = ", ".join(f"{len(found[kind])} {name}" for kind, name in KINDS)
    parts = [f"New on {day}: {counts}."]
    listed = 0
    for kind, name in KINDS:
        if not found[kind]:
            continue
        parts.append("")
        parts.append(name.capitalize() + ":")
        for record in found[kind]:
            if listed == MOST_LISTED:
                break
            parts.append(line(kind, json.loads(record.body)))
            listed += 1
    total = sum(len(v) for v in found.values())
    if total > listed:
        parts.append("")
        parts.append(f"…and {total - listed} more.")
    return "\n".join(parts)


class WitWorld(wit_world.WitWorld):
    def handle(self, trigger: types.Trigger) -> types.Outcome:
        day = the_day(trigger)
        found = {kind: created_on(kind, day) for kind, _ in KINDS}
        sources = [r.id for kind, _ in KINDS for r in found[kind]][:MOST_LISTED]
        if not sources:
            return types.Outcome(summary=f"nothing new on {day}", confidence=None)
        body = json.dumps(
            {"title": f"Digest for {day}", "text": digest_text(day, found), "type": "digest"}
        )
        options = actions.WriteOptions(
            idempotency_key=None,
            sources=sources,
            confidence=None,
            note=f"digest of {len(sources)} records new on {day}",
        )
        identity = types.Identity(source="digest", external_id=day)
        existing = records.find(identity)
        if existing is None:
            note = actions.create("core/note", body, identity, options).record
            said = "wrote"
        elif json.loads(existing.body) == json.loads(body):
            return types.Outcome(
                summary=f"the digest for {day} ({existing.id}) is up to date",
                confidence=None,
            )
        else:
            note = actions.update(existing.id, existing.version, body, options)
            said = "updated"
        for source in sources:
            actions.link(note.id, source, "derived-from")
        log.log(log.Level.INFO, f"{said} {note.id} from {len(sources)} records")
        return types.Outcome(
            summary=f"{said} the digest for {day} ({note.id}, version {note.version}) from {len(sources)} records",
            confidence=None,
        )
