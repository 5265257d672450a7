"""An HTTP(S) server on 127.0.0.1 for the network tests: pages, feeds and
faults. Prints its port on the first line. `--tls CERT KEY` serves HTTPS.

  /page            a small page (ETag "v1"; 304 to If-None-Match "v1")
  /file/NAME       the file NAME from --files DIR (ETag from its contents;
                   304 to a matching If-None-Match)
  /auth            the sha256 of the Authorization header it was sent
  /redirect?to=U   302 to U
  /big             Content-Length of 2 GiB, then zeros for as long as read
  /endless         chunked zeros, no length, for as long as read
  /silent          accepts and never answers
  /half            promises 1000 bytes, sends 500, closes
  /status/N        answers status N
"""
import hashlib
import http.server
import os
import ssl
import sys
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    files = None

    def log_message(self, *args):
        pass

    def send_body(self, status, body, ctype="text/plain", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path, _, query = self.path.partition("?")
        if path == "/page":
            if self.headers.get("If-None-Match") == '"v1"':
                self.send_response(304)
                self.send_header("ETag", '"v1"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_body(200, b"hello from the page", extra=[("ETag", '"v1"')])
        elif path.startswith("/file/") and self.files:
            name = os.path.basename(path[len("/file/"):])
            full = os.path.join(self.files, name)
            if not os.path.isfile(full):
                self.send_body(404, b"no such file")
                return
            ctype = "application/json" if name.endswith(".json") else "application/xml"
            with open(full, "rb") as f:
                data = f.read()
            etag = '"%s"' % hashlib.sha256(data).hexdigest()[:16]
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_body(200, data, ctype, extra=[("ETag", etag)])
        elif path == "/auth":
            got = self.headers.get("Authorization", "")
            self.send_body(200, hashlib.sha256(got.encode()).hexdigest().encode())
        elif path == "/redirect":
            to = query[len("to="):] if query.startswith("to=") else "/page"
            self.send_body(302, b"", extra=[("Location", to)])
        elif path == "/big":
            self.send_response(200)
            self.send_header("Content-Length", str(2 * 1024 * 1024 * 1024))
            self.end_headers()
            self.zeros()
        elif path == "/endless":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"0" * 65536
            try:
                for _ in range(1 << 20):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                pass
        elif path == "/silent":
            time.sleep(600)
        elif path == "/half":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 500)
            self.wfile.flush()
            self.close_connection = True
        elif path.startswith("/status/"):
            self.send_body(int(path[len("/status/"):]), b"as asked")
        else:
            self.send_body(404, b"not here")

    def zeros(self):
        chunk = b"\0" * 65536
        try:
            for _ in range(1 << 15):
                self.wfile.write(chunk)
        except OSError:
            pass


def main():
    args = sys.argv[1:]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if "--files" in args:
        Handler.files = args[args.index("--files") + 1]
    if "--tls" in args:
        i = args.index("--tls")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args[i + 1], args[i + 2])
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
