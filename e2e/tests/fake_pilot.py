#!/usr/bin/env python3
# Stands in for pilot-discovery in the harness's own tests: accepts the same
# flags, is unready for half a second, then serves /ready, its argv and the
# config directory's listing.
import json, os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = sys.argv[1:]
if os.environ.get("FAKE_PILOT_EXIT"):
    print("fake pilot exiting as asked", file=sys.stderr)
    sys.exit(int(os.environ["FAKE_PILOT_EXIT"]))
flags = dict(zip(args[1::2], args[2::2]))
started = time.monotonic()

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/ready":
            ready = time.monotonic() - started > 0.5
            self.answer(200 if ready else 503, "ready" if ready else "not yet")
        elif self.path == "/debug/args":
            self.answer(200, json.dumps(args))
        elif self.path == "/debug/configs":
            self.answer(200, json.dumps(sorted(os.listdir(flags["--configDir"]))))
        elif self.path == "/metrics":
            self.answer(200, "fake_pilot_up 1\n")
        else:
            self.answer(404, "no")

    def answer(self, code, body):
        data = body.encode()
        self.send_response(code)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass

def serve(addr):
    host, port = addr.rsplit(":", 1)
    ThreadingHTTPServer((host, int(port)), Handler).serve_forever()

threading.Thread(target=serve, args=(flags["--monitoringAddr"],), daemon=True).start()
print("fake pilot serving", flags, file=sys.stderr, flush=True)
serve(flags["--httpAddr"])
