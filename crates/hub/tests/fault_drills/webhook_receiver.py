"""A webhook receiver for the drills: a separate process that verifies every delivery with the
Standard Webhooks library and prints one JSON line per delivery. Arguments: port, secret, and
"1" to answer 500 to the first attempt of each message."""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

port, secret, fail_first = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
webhook = Webhook(secret)
attempts = {}


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            payload, verified = webhook.verify(body, headers), True
        except Exception as error:  # any refusal is reported, and answered 400
            payload, verified = str(error), False
        message = headers.get("webhook-id")
        attempts[message] = attempts.get(message, 0) + 1
        status = 400 if not verified else 500 if fail_first and attempts[message] == 1 else 200
        print(json.dumps({"id": message, "attempt": attempts[message], "verified": verified,
                          "status": status, "payload": payload}), flush=True)
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", port), Receiver)
print(json.dumps({"ready": True}), flush=True)
server.serve_forever()
