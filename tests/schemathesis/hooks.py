"""Schemathesis hooks for tests/schemathesis/run.sh.

An Idempotency-Key names one request: the hub answers a key sent again with another request
422 idempotency_key_reused, as the document says. Schemathesis draws keys from a small space
("0", "00", ...) and sends each with many different bodies, so a valid request would be refused
for a reason that is not in it. Every valid key is made unique before it is sent; keys that break
the documented rules are left as drawn, so their rejection is still tested.
"""

import re
import uuid

import schemathesis

VALID_KEY = re.compile(r"[\x21-\x7e]{1,255}")


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() != "idempotency-key":
            continue
        value = headers[name]
        if isinstance(value, str) and VALID_KEY.fullmatch(value):
            headers[name] = f"schemathesis-{uuid.uuid4().hex}"
