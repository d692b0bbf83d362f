#!/usr/bin/env python3
"""A cogrpo reward server over HTTP (standard library only).

POST a request (docs/reward-protocol.md) to http://HOST:PORT/score and get the
reply as the response body. Serves the word reward of word_reward.py; replace
`reply_to` with your model's scoring (a neural reward model on a GPU box).

    python3 examples/rewards/http_reward_server.py --port 8000 data/tinyshakespeare/input.txt

    [[rewards.terms]]
    kind = "http"
    name = "words"
    url = "http://127.0.0.1:8000/score"
    concurrency = 8

With --port 0 the system picks a free port; the first line on stdout is
always `listening on http://HOST:PORT/score`.
"""

import argparse
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from word_reward import PROTOCOL, load_vocabulary, reply_to  # noqa: E402

MAX_BODY = 64 << 20


def handler_for(vocabulary):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: cogrpo pools connections
        # Headers and body go out as separate writes; without TCP_NODELAY,
        # Nagle's algorithm and the client's delayed ACK add ~40 ms per reply.
        disable_nagle_algorithm = True

        def do_POST(self):
            if self.path != "/score":
                return self.send(404, {"protocol": PROTOCOL, "batch_id": None, "error": "POST to /score"})
            length = int(self.headers.get("Content-Length", 0))
            if length > MAX_BODY:
                return self.send(413, {"protocol": PROTOCOL, "batch_id": None, "error": "request too large"})
            try:
                request = json.loads(self.rfile.read(length))
            except json.JSONDecodeError as e:
                return self.send(400, {"protocol": PROTOCOL, "batch_id": None, "error": f"not JSON: {e}"})
            reply = reply_to(request, vocabulary)
            self.send(400 if "error" in reply else 200, reply)

        def send(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):  # quiet: one line per request is too much
            pass

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpus", nargs="?", default="data/tinyshakespeare/input.txt")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    args = p.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), handler_for(load_vocabulary(args.corpus)))
    server.daemon_threads = True
    host, port = server.server_address[:2]
    print(f"listening on http://{host}:{port}/score", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
