"""Fixture loading, event decoding and record snapshots for the tests.

The decoding here is the test's own model of a webhook event: the flat
list of fields a request carries, whatever its encoding. It decides which
record an event belongs to, which requests are the same event, and how to
re-encode an event as a query string or a form body.
"""

import json
import sys
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import FIXTURES_DIR  # noqa: E402

EVENT_PATH = "/call_events"
ANSWER_PATH = "/inbound_calls"
TIMESTAMP_FIELDS = ("created_at", "updated_at")


def load_scenarios():
    """Return every scenario fixture, sorted by file name."""
    paths = sorted((FIXTURES_DIR / "scenarios").glob("*.json"))
    return [json.loads(p.read_text()) for p in paths]


def load_bad_requests():
    return json.loads((FIXTURES_DIR / "bad_requests.json").read_text())


def request_body(req):
    """Return the body bytes of a fixture request, or None without one."""
    if "body_repeat" in req:
        rep = req["body_repeat"]
        return (rep["prefix"] + rep["fill"] * rep["count"]
                + rep["suffix"]).encode()
    if "body" in req:
        body = req["body"]
        return body if isinstance(body, bytes) else body.encode()
    return None


def send(client, req):
    """Send a fixture request with an HttpClient and return the Response."""
    return client.request(req["method"], req["path"], body=request_body(req),
                          headers=req.get("headers", {}))


def path_of(req):
    return urllib.parse.urlsplit(req["path"]).path


def content_type(req):
    for name, value in req.get("headers", {}).items():
        if name.lower() == "content-type":
            return value.split(";")[0].strip().lower()
    return ""


# ---- decoding -------------------------------------------------------------


class RawNumber(str):
    """A JSON number kept as the digits that were sent."""


class JsonObject(list):
    """A JSON object as its (name, value) pairs, in the order sent."""


def compact_json(value):
    """Serialize a value decoded by parse_json_body without white space."""
    if isinstance(value, JsonObject):
        items = (json.dumps(k, ensure_ascii=False) + ":" + compact_json(v)
                 for k, v in value)
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(compact_json(v) for v in value) + "]"
    if isinstance(value, RawNumber):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def parse_json_body(body):
    return json.loads(body, object_pairs_hook=JsonObject,
                      parse_int=RawNumber, parse_float=RawNumber)


def field_text(value):
    """Return the text form of a JSON value, or None for null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, RawNumber):
        return str(value)
    if isinstance(value, str):
        return value
    return compact_json(value)


def event_fields(req):
    """Return the event's fields as (name, text) pairs in the order sent.

    A JSON null becomes None; an empty form value stays "".
    """
    if req["method"] == "GET":
        query = urllib.parse.urlsplit(req["path"]).query
        return urllib.parse.parse_qsl(query, keep_blank_values=True)
    body = request_body(req).decode()
    if content_type(req) == "application/x-www-form-urlencoded":
        return urllib.parse.parse_qsl(body, keep_blank_values=True)
    return [(name, field_text(value))
            for name, value in parse_json_body(body)]


def event_origin(req):
    return "answer" if path_of(req) == ANSWER_PATH else "event"


def event_key(req):
    """Return the Redis key of the record the event belongs to."""
    fields = {n: v for n, v in event_fields(req) if v}
    for name, prefix in (("uuid", "call"), ("call_uuid", "call"),
                         ("conversation_uuid", "conversation")):
        if name in fields:
            return f"{prefix}:{{{fields[name]}}}"
    raise ValueError(f"event without an identifier: {req['path']}")


def event_identity(req):
    """Return what makes two requests the same event: origin and the
    non-empty fields, regardless of their order and encoding."""
    fields = frozenset((n, v) for n, v in event_fields(req) if v)
    return (event_origin(req), fields)


def distinct_events(requests):
    """Map each record key to the number of distinct events sent to it."""
    seen = {}
    for req in requests:
        seen.setdefault(event_key(req), set()).add(event_identity(req))
    return {key: len(ids) for key, ids in seen.items()}


# ---- re-encoding ----------------------------------------------------------


def flat_pairs(req):
    """Return the fields as text pairs, null sent as an empty value."""
    return [(n, "" if v is None else v) for n, v in event_fields(req)]


def as_query(req):
    """Return the same event as a GET request with a query string."""
    query = urllib.parse.urlencode(flat_pairs(req),
                                   quote_via=urllib.parse.quote)
    return {"method": "GET", "path": f"{path_of(req)}?{query}"}


def as_form(req):
    """Return the same event as a form-encoded POST request."""
    return {"method": "POST", "path": path_of(req),
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            "body": urllib.parse.urlencode(flat_pairs(req))}


def as_json(req):
    """Return the same event as a JSON POST request (all values strings)."""
    body = json.dumps({n: v for n, v in event_fields(req)},
                      separators=(",", ":"))
    return {"method": "POST", "path": path_of(req),
            "headers": {"Content-Type": "application/json"}, "body": body}


# ---- Redis state ----------------------------------------------------------


def ttl_state(ttl):
    if ttl == -2:
        return "missing"
    if ttl == -1:
        return "persistent"
    return "expiring"


def pairs_to_dict(flat):
    return {flat[i].decode(): flat[i + 1].decode()
            for i in range(0, len(flat), 2)}


def snapshot(db, keys, ignore=TIMESTAMP_FIELDS):
    """Return everything order-independent that Redis stores for keys.

    For each record key: the hash without its arrival timestamps, the
    version hash, the history as a sorted list, and whether each of the
    three keys expires.
    """
    commands = []
    for key in keys:
        commands += [("HGETALL", key), ("HGETALL", f"{key}:versions"),
                     ("LRANGE", f"{key}:events", 0, -1), ("TTL", key),
                     ("TTL", f"{key}:events"), ("TTL", f"{key}:versions")]
    replies = db.pipeline(commands)
    state = {}
    for i, key in enumerate(keys):
        record, versions, history, t1, t2, t3 = replies[6 * i:6 * i + 6]
        record = pairs_to_dict(record)
        for name in ignore:
            record.pop(name, None)
        state[key] = {
            "record": record,
            "versions": pairs_to_dict(versions),
            "history": sorted(h.decode() for h in history),
            "ttl": [ttl_state(t) for t in (t1, t2, t3)],
        }
    return state


def barrier(callhook):
    """Wait until Redis has applied every write callhook queued so far.

    The answer webhook replies before its write reaches Redis. An admin
    lookup travels on the same Redis connection, so its reply comes after
    every earlier write.
    """
    callhook.admin().get("/calls/barrier")


def describe_differences(actual, expected):
    """Return a short text naming what differs between two snapshots."""
    lines = []
    for key in sorted(set(actual) | set(expected)):
        a, e = actual.get(key), expected.get(key)
        if a == e:
            continue
        if a is None or e is None:
            lines.append(f"{key}: present only in "
                         f"{'expected' if a is None else 'actual'}")
            continue
        for part in ("record", "versions"):
            for name in sorted(set(a[part]) | set(e[part])):
                if a[part].get(name) != e[part].get(name):
                    lines.append(f"{key} {part}.{name}: expected "
                                 f"{e[part].get(name)!r}, got "
                                 f"{a[part].get(name)!r}")
        if a["history"] != e["history"]:
            lines.append(f"{key} history differs: {len(a['history'])} vs "
                         f"{len(e['history'])} entries")
        if a["ttl"] != e["ttl"]:
            lines.append(f"{key} ttl: expected {e['ttl']}, got {a['ttl']}")
    return "; ".join(lines)
