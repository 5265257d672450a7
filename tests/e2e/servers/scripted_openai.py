"""An OpenAI-compatible server that misbehaves on cue, for the fault cases
a real server cannot be made to produce on demand (429 with Retry-After,
500, a hang, malformed JSON).

    python3 scripted_openai.py SCRIPT LOG

SCRIPT is a JSON list of behaviours, one per chat request, in order (the
last one repeats): {"status": 429, "retry_after": 1}, {"status": 500},
{"hang": 5}, {"malformed": true}, or {"text": "...", "tokens": [IN, OUT]};
for embeddings {"vectors": [[...], ...], "tokens": [IN, 0]} or
{"per_token": true} (a vector per token, as a model without pooling gives).
Each request's JSON body is appended to LOG, one per line. Prints the port.
"""

import http.server
import json
import sys
import time

script = json.load(open(sys.argv[1]))
log_path = sys.argv[2]
served = 0


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body, headers=()):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        global served
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode()
        with open(log_path, "a") as log:
            log.write(body.replace("\n", " ") + "\n")
        step = script[min(served, len(script) - 1)]
        served += 1
        if "hang" in step:
            time.sleep(step["hang"])
            return self.send(200, "{}")
        if "status" in step:
            headers = []
            if "retry_after" in step:
                headers.append(("Retry-After", str(step["retry_after"])))
            return self.send(step["status"], '{"error": "scripted"}', headers)
        if step.get("malformed"):
            return self.send(200, '{"choices": [')
        tokens_in, tokens_out = step.get("tokens", [10, 5])
        request = json.loads(body)
        if "vectors" in step or step.get("per_token"):
            vectors = step.get("vectors") or [[[0.1, 0.2], [0.3, 0.4]] for _ in request["input"]]
            data = [
                {"object": "embedding", "index": i, "embedding": v}
                for i, v in enumerate(vectors)
            ]
            answer = {"data": data, "model": request.get("model"),
                      "usage": {"prompt_tokens": tokens_in, "total_tokens": tokens_in}}
            return self.send(200, json.dumps(answer))
        answer = {
            "model": "served-" + request.get("model", ""),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": step["text"]},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out},
        }
        self.send(200, json.dumps(answer))


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
