"""Signed webhooks: only correctly signed requests may write records.

callhook runs with signature secrets; the test signs tokens itself (HS256,
as Vonage does) and checks each way a token can be wrong: missing, bad
algorithm, wrong secret, expired, from the future, replayed, tampered
payload, and the selection of a secret by api_key.
"""

import base64
import hashlib
import hmac
import json
import sys
import time
import urllib.parse
import uuid as uuidlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import harness  # noqa: E402

SECRET = "TestSignatureSecret0123456789"
SUB_KEY, SUB_SECRET = "abcd1234", "SubaccountSecret9876543210"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_token(payload_hash, secret=SECRET, alg="HS256", iat=None,
               jti=None, iss="Vonage", api_key=None, drop=()):
    header = {"alg": alg, "typ": "JWT"}
    claims = {"iat": int(time.time()) if iat is None else iat,
              "jti": jti or str(uuidlib.uuid4()), "iss": iss,
              "payload_hash": payload_hash}
    if api_key:
        claims["api_key"] = api_key
    for name in drop:
        claims.pop(name, None)
    signing_input = (b64url(json.dumps(header).encode()) + "." +
                     b64url(json.dumps(claims).encode()))
    if alg == "none":
        return signing_input + "."
    sig = hmac.new(secret.encode(), signing_input.encode(),
                   hashlib.sha256).digest()
    return signing_input + "." + b64url(sig)


def sha(data):
    return hashlib.sha256(data.encode()).hexdigest()


def event(status="ringing"):
    call = str(uuidlib.uuid4())
    return call, json.dumps({"uuid": call, "conversation_uuid": "CON-" + call,
                             "status": status, "direction": "outbound",
                             "timestamp": "2026-12-04T10:00:00.000Z"},
                            separators=(",", ":"))


def body(checks):
    stack = harness.Stack(callhook_args=[
        "--signature-secret", SECRET,
        "--signature-secret", f"{SUB_KEY}:{SUB_SECRET}",
        "--spool-dir", ""])
    db = stack.db
    client = stack.callhook.public()

    def post(payload, token, content_type="application/json"):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return client.post("/call_events", payload, content_type, headers)

    def stored(call):
        return db.command("EXISTS", f"call:{{{call}}}") == 1

    # A correct token over the raw body.
    call, payload = event()
    checks.equal(post(payload, make_token(sha(payload))).status, 200,
                 "valid token")
    checks.check(stored(call), "valid token: record stored")

    # The compact form of a pretty-printed JSON body is accepted too.
    call, payload = event()
    pretty = json.dumps(json.loads(payload), indent=2)
    checks.equal(post(pretty, make_token(sha(payload))).status, 200,
                 "hash of the compact JSON form")

    # Secret chosen by api_key.
    call, payload = event()
    checks.equal(post(payload, make_token(sha(payload), secret=SUB_SECRET,
                                          api_key=SUB_KEY)).status, 200,
                 "secret chosen by api_key")
    call, payload = event()
    checks.equal(post(payload, make_token(sha(payload), secret=SECRET,
                                          api_key=SUB_KEY)).status, 401,
                 "api_key with the other account's secret")

    # GET: the hash covers the query parameters as compact JSON, in order.
    call = str(uuidlib.uuid4())
    params = [("uuid", call), ("status", "started"),
              ("timestamp", "2026-12-04T10:00:00.000Z")]
    query = urllib.parse.urlencode(params)
    as_json = json.dumps(dict(params), separators=(",", ":"))
    resp = client.get(f"/call_events?{query}",
                      {"Authorization": "Bearer " + make_token(sha(as_json))})
    checks.equal(resp.status, 200, "signed GET")
    checks.check(stored(call), "signed GET: record stored")

    cases = [
        ("no token", lambda p: None),
        ("alg none", lambda p: make_token(sha(p), alg="none")),
        ("alg RS256 with the secret", lambda p: make_token(sha(p),
                                                           alg="RS256")),
        ("wrong secret", lambda p: make_token(sha(p), secret="wrong")),
        ("expired", lambda p: make_token(sha(p), iat=int(time.time()) - 900)),
        ("from the future", lambda p: make_token(sha(p),
                                                 iat=int(time.time()) + 900)),
        ("wrong issuer", lambda p: make_token(sha(p), iss="Mallory")),
        ("tampered body", lambda p: make_token(sha(p + " "))),
        ("missing payload_hash", lambda p: make_token(sha(p),
                                                      drop=["payload_hash"])),
        ("truncated", lambda p: make_token(sha(p))[:-10]),
        ("extra dots", lambda p: make_token(sha(p)) + ".x"),
        ("huge token", lambda p: "a" * 9000),
    ]
    for name, token_for in cases:
        call, payload = event()
        resp = post(payload, token_for(payload))
        checks.equal(resp.status, 401, f"{name}: status")
        checks.check(not stored(call), f"{name}: nothing stored")
        checks.check("error" in resp.json(), f"{name}: JSON error body")

    # Replay: the same token twice; the second is refused.
    call, payload = event()
    token = make_token(sha(payload))
    checks.equal(post(payload, token).status, 200, "first use of a token")
    checks.equal(post(payload, token).status, 401, "replayed token")

    # The answer webhook is signed too.
    resp = client.get("/inbound_calls?uuid=abc&to=1&from=2")
    checks.equal(resp.status, 401, "unsigned answer webhook")

    log = stack.callhook.log()
    checks.check(SECRET not in log and SUB_SECRET not in log,
                 "no secret in the log")
    checks.check(token not in log, "no token in the log")
    checks.check("signature check failed" in log, "failures are logged")
    stack.callhook.check_clean_exit(checks)


if __name__ == "__main__":
    harness.run_test("signed webhooks", body)
