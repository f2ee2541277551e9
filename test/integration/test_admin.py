"""Check the admin listener: call lookup, readiness, health and the
routes and methods it rejects."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import Stack, run_test  # noqa: E402

UUID = "6a8c0e2a-4c6e-4a8c-b0e2-4a6c8e0a2c4e"


def check_lookup(checks, stack):
    admin = stack.callhook.admin()
    resp = stack.callhook.public().post("/call_events", json.dumps(
        {"uuid": UUID, "status": "answered", "from": "14155550100",
         "to": "14155550123", "timestamp": "2026-12-04T10:00:00.000Z",
         "note": "caf\u00e9 \u260e"}))
    checks.equal(resp.status, 200, "storing the call to look up")

    resp = admin.get(f"/calls/{UUID}")
    checks.equal(resp.status, 200, "lookup of a stored call: status")
    checks.equal(resp.headers.get("content-type"), "application/json",
                 "lookup Content-Type")
    record = resp.json()
    checks.equal(record, stack.db.hgetall(f"call:{{{UUID}}}"),
                 "lookup body vs HGETALL")
    checks.equal(record.get("status"), "answered", "looked-up status")
    checks.equal(record.get("note"), "caf\u00e9 \u260e",
                 "looked-up non-ASCII value")

    resp = admin.get(f"/calls/{UUID}?extra=1")
    checks.equal(resp.status, 200, "lookup with a query string")

    not_found = ["unknown-call", "a" * 128, "CON-" + UUID]
    for uuid in not_found:
        resp = admin.get(f"/calls/{uuid}")
        checks.equal(resp.status, 404, f"lookup of {uuid[:40]}: status")
        checks.check(isinstance(resp.json().get("error"), str),
                     f"lookup of {uuid[:40]}: error body {resp.body!r}")

    invalid = ["", "a" * 129, "ab%7Bcd%7D", "ab%00cd", "ab%20cd", "ab%2Fcd",
               "a/b", "%C3%A9", "ab%0Acd", "%ZZ"]
    for uuid in invalid:
        resp = admin.get(f"/calls/{uuid}")
        checks.equal(resp.status, 400, f"lookup of invalid id {uuid[:40]!r}")
        checks.check(isinstance(resp.json().get("error"), str),
                     f"lookup of invalid id {uuid[:40]!r}: error body "
                     f"{resp.body!r}")

    # A conversation record is not a call.
    stack.callhook.public().post("/call_events",
                                 '{"conversation_uuid":"CON-only"}')
    checks.equal(admin.get("/calls/CON-only").status, 404,
                 "lookup of a conversation id")


def check_routes(checks, stack):
    admin = stack.callhook.admin()
    resp = admin.get("/readyz")
    checks.equal(resp.status, 200, "/readyz status")
    checks.equal(resp.json().get("status"), "ready", "/readyz body status")
    checks.equal(resp.json().get("redis"), "connected", "/readyz body redis")
    resp = admin.get("/healthz")
    checks.equal(resp.status, 200, "admin /healthz status")
    checks.equal(admin.request("HEAD", "/readyz").status, 200, "HEAD /readyz")

    for path in ("/", "/call_events", "/inbound_calls", "/ready",
                 "/callsx/abc"):
        checks.equal(admin.get(path).status, 404, f"admin GET {path}")
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        resp = admin.request(method, f"/calls/{UUID}", body=b"{}",
                             headers={"Content-Type": "application/json"})
        checks.equal(resp.status, 405, f"admin {method} /calls/{{uuid}}")
        checks.equal(resp.headers.get("allow"), "GET, HEAD",
                     f"admin {method} Allow header")
    checks.equal(admin.request("POST", "/readyz", body=b"").status, 405,
                 "admin POST /readyz")

    # The public listener does not serve admin routes.
    public = stack.callhook.public()
    checks.equal(public.get(f"/calls/{UUID}").status, 404,
                 "public GET /calls/{uuid}")
    checks.equal(public.get("/readyz").status, 404, "public GET /readyz")
    checks.equal(public.get("/healthz").status, 200, "public GET /healthz")
    checks.equal(public.request("POST", "/healthz", body=b"").status, 405,
                 "public POST /healthz")


def body(checks):
    stack = Stack()
    check_lookup(checks, stack)
    check_routes(checks, stack)
    stack.callhook.check_clean_exit(checks)


if __name__ == "__main__":
    run_test("admin", body)
