"""{{name}}: keeps a `core/note` for each title it is given.

Input: {"title": TITLE, "text": TEXT}. The note's identity is
("{{name}}", TITLE), so running again with the same title returns the
note it already made instead of a second one.
"""

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
        title = given.get("title") if isinstance(given, dict) else None
        if not isinstance(title, str) or not title:
            raise Err(types.Error_Invalid('give {"title": TITLE, "text": TEXT}'))
        body = {"title": title, "text": str(given.get("text", "")), "type": "note"}
        created = actions.create(
            "core/note",
            json.dumps(body),
            types.Identity(source="{{name}}", external_id=title),
            actions.WriteOptions(
                idempotency_key=None, sources=[], confidence=None, note="from input"
            ),
        )
        said = "already had" if created.existed else "created"
        log.log(log.Level.INFO, f"{said} note {created.record.id}")
        return types.Outcome(summary=f"{said} note {created.record.id}", confidence=None)
