"""The writer scenario in Python, twin of tests/plugins/rs-writer (which
says what it does) and tests/plugins-js/js-writer."""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import actions, log, records, types

LANG = "python"


def options() -> actions.WriteOptions:
    return actions.WriteOptions(
        idempotency_key=None, sources=[], confidence=None, note=f"{LANG}-writer"
    )


class WitWorld(wit_world.WitWorld):
    def handle(self, trigger: types.Trigger) -> types.Outcome:
        try:
            given = json.loads(trigger.input or "{}")
        except ValueError as e:
            raise Err(types.Error_Invalid(f"input is not JSON: {e}"))
        text = given.get("text") if isinstance(given, dict) else None
        if not isinstance(text, str) or not text:
            raise Err(types.Error_Invalid('give {"text": TEXT}'))
        created = actions.create(
            "test/item",
            json.dumps({"text": text}),
            types.Identity(source="writer", external_id=text),
            options(),
        )
        rid = created.record.id
        if not created.existed:
            actions.update(rid, 1, json.dumps({"text": text, "lang": LANG}), options())
        read = records.get(rid)
        log.log(log.Level.INFO, f"wrote {rid} at version {read.version}")
        try:
            actions.create("test/secret", json.dumps({"text": text}), None, options())
            undeclared = "allowed"
        except Err as e:
            undeclared = "denied" if isinstance(e.value, types.Error_Denied) else "other"
        summary = {
            "created": rid,
            "existed": created.existed,
            "version": read.version,
            "undeclared": undeclared,
        }
        return types.Outcome(summary=json.dumps(summary), confidence=None)
