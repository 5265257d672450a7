"""A test agent written in Python: given {"text": T}, it creates a
`test/item` (identity `py-writer/<T>`), links nothing, then tries a
write its manifest does not grant (`test/secret`) and reports that the
host denied it."""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import actions, log, types


class WitWorld(wit_world.WitWorld):
    def handle(self, trigger: types.Trigger) -> types.Outcome:
        try:
            given = json.loads(trigger.input or "{}")
        except ValueError as e:
            raise Err(types.Error_Invalid(f"input is not JSON: {e}"))
        text = given.get("text")
        if not isinstance(text, str) or not text:
            raise Err(types.Error_Invalid('give {"text": TEXT}'))
        options = actions.WriteOptions(
            idempotency_key=None, sources=[], confidence=1.0, note="py-writer"
        )
        created = actions.create(
            "test/item",
            json.dumps({"text": text}),
            types.Identity(source="py-writer", external_id=text),
            options,
        )
        log.log(log.Level.INFO, f"created {created.record.id}")
        try:
            actions.create("test/secret", json.dumps({"text": text}), None, options)
            undeclared = "allowed"
        except Err as e:
            undeclared = type(e.value).__name__.removeprefix("Error_").lower()
        summary = {
            "created": created.record.id,
            "existed": created.existed,
            "undeclared": undeclared,
        }
        return types.Outcome(summary=json.dumps(summary), confidence=None)
