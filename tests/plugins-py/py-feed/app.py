"""A connector in Python: the items of `/feed/items.json` (a JSON list of
`{"id": ID, "text": TEXT}`, in the directory the operator binds to `feed`)
become `test/item` records `{"text": TEXT}` with identity `("feed", ID)`.
An item whose text changed gets a new version; the cursor is the file's
sha256, so a sync of an unchanged file reads no records."""

import hashlib
import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import actions, log, types

FEED = "/feed/items.json"


def items(raw: bytes) -> list[tuple[str, str]]:
    try:
        given = json.loads(raw)
    except ValueError as e:
        raise Err(types.Error_Invalid(f"{FEED} is not JSON: {e}"))
    if not isinstance(given, list) or not all(
        isinstance(i, dict) and isinstance(i.get("id"), str) and isinstance(i.get("text"), str)
        for i in given
    ):
        raise Err(types.Error_Invalid(f'{FEED} must be a list of {{"id": ID, "text": TEXT}}'))
    return [(i["id"], i["text"]) for i in given]


class WitWorld(wit_world.WitWorld):
    def sync(self, cursor: str | None) -> types.SyncResult:
        try:
            with open(FEED, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raise Err(types.Error_NotFound(f"{FEED} is missing; put the feed's items there"))
        digest = hashlib.sha256(raw).hexdigest()
        found = items(raw)
        if digest == cursor:
            return types.SyncResult(cursor=digest, created=0, updated=0, unchanged=len(found))
        options = actions.WriteOptions(
            idempotency_key=None, sources=[], confidence=None, note="from the feed"
        )
        created = updated = unchanged = 0
        for item_id, text in found:
            body = {"text": text}
            made = actions.create(
                "test/item", json.dumps(body), types.Identity(source="feed", external_id=item_id), options
            )
            if not made.existed:
                created += 1
            elif json.loads(made.record.body) != body:
                actions.update(made.record.id, made.record.version, json.dumps(body), options)
                updated += 1
            else:
                unchanged += 1
        log.log(log.Level.INFO, f"feed: {created} new, {updated} changed, {unchanged} unchanged")
        return types.SyncResult(cursor=digest, created=created, updated=updated, unchanged=unchanged)
