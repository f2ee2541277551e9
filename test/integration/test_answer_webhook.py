"""Check the answer webhook: it returns the NCCO at once for GET and POST,
records the inbound leg without a status, serves an --answer-ncco file
byte for byte, and callhook exits at startup with an invalid NCCO file."""

import json
import subprocess
import sys
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import events  # noqa: E402
from harness import (Callhook, Stack, free_port, make_temp_dir,  # noqa: E402
                     run_callhook, run_test)

DEFAULT_NCCO = [{"action": "talk",
                 "text": "Hello. This call is handled by callhook. Goodbye."}]
CUSTOM_NCCO = (b'[\n  {"action": "talk", "text": "Press 1 for sales"},\n'
               b'  {"action": "input", "type": ["dtmf"],\n'
               b'   "eventUrl": ["https://example.invalid/dtmf"]}\n]\n')
INVALID_NCCOS = {
    "not JSON": b"[{\"action\": \"talk\", ",
    "an object, not an array": b'{"action": "talk", "text": "hi"}',
    "an empty array": b"[]",
    "an unknown action": b'[{"action": "dance"}]',
    "an action that is not an object": b'["talk"]',
    "an action without its name": b'[{"text": "hi"}]',
    "talk without text": b'[{"action": "talk"}]',
    "connect without endpoint": b'[{"action": "connect"}]',
    "duplicate keys": b'[{"action": "talk", "text": "a", "text": "b"}]',
}


def answer_query(uuid, **extra):
    fields = {"to": "14155550100", "from": "14155550177", "uuid": uuid,
              "conversation_uuid": f"CON-{uuid}",
              "region_url": "https://api-us-3.vonage.com"}
    fields.update(extra)
    return fields


def check_ncco_response(checks, label, resp, expected):
    checks.equal(resp.status, 200, f"{label}: status")
    checks.equal(resp.headers.get("content-type"), "application/json",
                 f"{label}: Content-Type")
    try:
        checks.equal(json.loads(resp.body), expected, f"{label}: NCCO")
    except ValueError:
        checks.check(False, f"{label}: body is not JSON: {resp.body[:100]!r}")


def check_inbound_record(checks, stack, label, uuid, extra=None):
    events.barrier(stack.callhook)
    record = stack.db.hgetall(f"call:{{{uuid}}}")
    checks.equal(record.get("direction"), "inbound", f"{label}: direction")
    checks.check("status" not in record,
                 f"{label}: the answer webhook set status "
                 f"{record.get('status')!r}")
    checks.equal(record.get("from"), "14155550177", f"{label}: from")
    checks.equal(record.get("events"), "1", f"{label}: events")
    for name, value in (extra or {}).items():
        checks.equal(record.get(name), value, f"{label}: {name}")


def check_default_ncco(checks):
    stack = Stack()
    public = stack.callhook.public()

    query = urllib.parse.urlencode(answer_query("ans-get"))
    resp = public.get(f"/inbound_calls?{query}")
    check_ncco_response(checks, "GET answer", resp, DEFAULT_NCCO)
    check_inbound_record(checks, stack, "GET answer", "ans-get",
                         {"region_url": "https://api-us-3.vonage.com"})

    resp = public.post("/inbound_calls",
                       json.dumps(answer_query("ans-json")))
    check_ncco_response(checks, "POST JSON answer", resp, DEFAULT_NCCO)
    check_inbound_record(checks, stack, "POST JSON answer", "ans-json")

    resp = public.post("/inbound_calls",
                       urllib.parse.urlencode(answer_query("ans-form")),
                       "application/x-www-form-urlencoded")
    check_ncco_response(checks, "POST form answer", resp, DEFAULT_NCCO)
    check_inbound_record(checks, stack, "POST form answer", "ans-form")

    # A status in the answer request must not compete for the status.
    query = urllib.parse.urlencode(answer_query("ans-status",
                                                status="ringing"))
    resp = public.get(f"/inbound_calls?{query}")
    check_ncco_response(checks, "answer with a status", resp, DEFAULT_NCCO)
    check_inbound_record(checks, stack, "answer with a status", "ans-status")

    # A later event sets the status, and the answer's fields stay.
    resp = public.post("/call_events", json.dumps(
        {"uuid": "ans-get", "status": "answered", "direction": "inbound",
         "timestamp": "2026-12-04T10:00:01.000Z"}))
    checks.equal(resp.status, 200, "event after the answer")
    record = stack.db.hgetall("call:{ans-get}")
    checks.equal(record.get("status"), "answered", "status after the answer")
    checks.equal(record.get("region_url"), "https://api-us-3.vonage.com",
                 "answer field after a later event")

    before = stack.db.dbsize()
    resp = public.get("/inbound_calls?to=14155550100&from=14155550177")
    check_ncco_response(checks, "answer without a uuid", resp, DEFAULT_NCCO)
    resp = public.get("/inbound_calls?uuid=bad%20id")
    check_ncco_response(checks, "answer with an invalid uuid", resp,
                        DEFAULT_NCCO)
    events.barrier(stack.callhook)
    checks.equal(stack.db.dbsize(), before,
                 "keys after answers that cannot be recorded")

    resp = public.request("PUT", "/inbound_calls", body=b"{}",
                          headers={"Content-Type": "application/json"})
    checks.equal(resp.status, 405, "PUT answer status")
    resp = public.post("/inbound_calls", "uuid=x", "text/plain")
    checks.equal(resp.status, 415, "text/plain answer status")
    stack.callhook.check_clean_exit(checks)


def check_answer_text(checks):
    text = "Bonjour, vous êtes bien chez \"callhook\"."
    stack = Stack(callhook_args=["--answer-text", text])
    resp = stack.callhook.public().get("/inbound_calls?uuid=ans-text")
    check_ncco_response(checks, "--answer-text", resp,
                        [{"action": "talk", "text": text}])
    stack.callhook.check_clean_exit(checks)


def check_answer_ncco_file(checks):
    path = make_temp_dir() / "answer.json"
    path.write_bytes(CUSTOM_NCCO)
    stack = Stack(callhook_args=["--answer-ncco", str(path)])
    public = stack.callhook.public()
    for method in ("GET", "POST"):
        if method == "GET":
            resp = public.get("/inbound_calls?uuid=ans-file")
        else:
            resp = public.post("/inbound_calls", '{"uuid":"ans-file-2"}')
        checks.equal(resp.status, 200, f"--answer-ncco {method} status")
        checks.equal(resp.body, CUSTOM_NCCO,
                     f"--answer-ncco {method} body, byte for byte")
        checks.equal(resp.headers.get("content-type"), "application/json",
                     f"--answer-ncco {method} Content-Type")
    stack.callhook.check_clean_exit(checks)


def check_invalid_ncco_files(checks):
    folder = make_temp_dir()
    base = ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
            "--redis", f"redis://127.0.0.1:{free_port()}/0"]
    cases = dict(INVALID_NCCOS)
    cases["a missing file"] = None
    for name, content in cases.items():
        path = folder / f"{len(name)}-{abs(hash(name))}.json"
        if content is not None:
            path.write_bytes(content)
        try:
            result = run_callhook(base + ["--answer-ncco", str(path)])
        except subprocess.TimeoutExpired:
            checks.check(False, f"NCCO file that is {name}: callhook kept "
                                f"running instead of exiting")
            continue
        checks.check(result.returncode != 0,
                     f"NCCO file that is {name}: exit status 0")
        checks.check("--answer-ncco" in result.stderr,
                     f"NCCO file that is {name}: message does not name "
                     f"--answer-ncco: {result.stderr.strip()!r}")
        checks.check("listening" not in result.stderr,
                     f"NCCO file that is {name}: callhook started listening")


def check_answer_without_redis(checks):
    """With Redis unreachable the NCCO still goes out, and events get 503."""
    callhook = Callhook(f"redis://127.0.0.1:{free_port()}/0",
                        ["--spool-dir", ""])
    callhook.start(wait_ready=False)
    public = callhook.public()
    resp = public.get("/inbound_calls?uuid=ans-down")
    check_ncco_response(checks, "answer with Redis down", resp, DEFAULT_NCCO)
    checks.equal(callhook.admin().get("/readyz").status, 503,
                 "/readyz with Redis down")
    resp = public.post("/call_events", '{"uuid":"ans-down"}')
    checks.equal(resp.status, 503, "event with Redis down")
    callhook.check_clean_exit(checks)


def body(checks):
    check_default_ncco(checks)
    check_answer_text(checks)
    check_answer_ncco_file(checks)
    check_invalid_ncco_files(checks)
    check_answer_without_redis(checks)


if __name__ == "__main__":
    run_test("answer_webhook", body)
