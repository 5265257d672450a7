"""An HTTP GET in Python with the standard library's urllib, which speaks
over wasi:sockets: the input is a path on the `web` endpoint
(`{"path": "/page"}`) or a full URL (`{"url": "http://..."}`); the summary
is `{"status": S, "text": T}` or `{"error": MESSAGE}`."""

# urllib encodes host names with the idna codec, which is looked up at run
# time; importing it here puts it in the component.
import encodings.idna  # noqa: F401
import json
import urllib.request

import wit_world
from componentize_py_types import Err
from wit_world.imports import config, types


class WitWorld(wit_world.WitWorld):
    def handle(self, trigger: types.Trigger) -> types.Outcome:
        given = json.loads(trigger.input or "{}")
        url = given.get("url")
        if url is None:
            base = config.endpoint("web")
            if base is None:
                raise Err(types.Error_Denied("no endpoint `web`; add it under [capabilities.endpoints]"))
            url = base.rstrip("/") + given.get("path", "/")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
                result = {"status": response.status, "text": text[:200]}
        except Exception as e:  # what the author would see, reported whole
            result = {"error": f"{type(e).__name__}: {e}"}
        return types.Outcome(summary=json.dumps(result), confidence=None)
