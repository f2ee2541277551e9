"""Send malformed and hostile requests: each gets its status code and
leaves Redis empty. A few near misses that must be accepted are checked
too, and the server must still reply after all of them."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import events  # noqa: E402
from harness import Stack, run_test  # noqa: E402


JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
UUID = "0c2e4a6c-8e0a-4c2e-9a6c-8e0a2c4e6a8c"


def post(path_body, content_type=JSON, path=events.EVENT_PATH):
    body = path_body if isinstance(path_body, bytes) else path_body.encode()
    headers = {"Content-Type": content_type} if content_type else {}
    return {"method": "POST", "path": path, "headers": headers, "body": body}


def get(query, path=events.EVENT_PATH):
    return {"method": "GET", "path": f"{path}?{query}"}


def json_event(**fields):
    base = {"uuid": UUID, "status": "ringing"}
    base.update(fields)
    return json.dumps(base)


def deep_nesting(depth):
    return ('{"uuid":"' + UUID + '","x":' + "[" * depth + "]" * depth + "}")


# (name, request, expected status). Bodies may be str or bytes.
REJECTED = [
    # Content types.
    ("missing content type", post(json_event(), content_type=None), 415),
    ("text/plain", post(json_event(), "text/plain"), 415),
    ("text/json", post(json_event(), "text/json"), 415),
    ("application/jsonp", post(json_event(), "application/jsonp"), 415),
    ("multipart form", post(json_event(), "multipart/form-data; boundary=x"),
     415),
    ("empty content type", post(json_event(), ""), 415),
    ("content type of spaces", post(json_event(), "   "), 415),
    ("json as form", post(json_event(), FORM), 400),
    ("form as json", post(f"uuid={UUID}&status=ringing", JSON), 400),
    # Methods.
    ("PUT", {"method": "PUT", "path": events.EVENT_PATH,
             "headers": {"Content-Type": JSON}, "body": json_event()}, 405),
    ("PATCH", {"method": "PATCH", "path": events.EVENT_PATH,
               "headers": {"Content-Type": JSON}, "body": json_event()}, 405),
    ("OPTIONS", {"method": "OPTIONS", "path": events.EVENT_PATH}, 405),
    ("HEAD", {"method": "HEAD", "path": f"{events.EVENT_PATH}?uuid={UUID}"},
     405),
    # NUL bytes, escapes and duplicates.
    ("%00 in query value", get(f"uuid={UUID}&status=ringing&from=1%004"),
     400),
    ("%00 in query name", get(f"uuid={UUID}&fr%00om=1"), 400),
    ("%00 in form value", post(f"uuid={UUID}&detail=a%00b", FORM), 400),
    ("%00 in form uuid", post("uuid=ab%00cd", FORM), 400),
    ("\\u0000 in json value", post('{"uuid":"' + UUID + '","d":"a\\u0000"}'),
     400),
    ("\\u0000 in json name", post('{"uuid":"' + UUID + '","a\\u0000":"x"}'),
     400),
    ("\\u0000 in json uuid", post('{"uuid":"ab\\u0000cd"}'), 400),
    ("invalid escape %zz", get(f"uuid={UUID}&status=%zz"), 400),
    ("truncated escape %4", get(f"uuid={UUID}&status=ringing&d=%4"), 400),
    ("lone % at end", get(f"uuid={UUID}&d=%"), 400),
    ("invalid escape in form", post(f"uuid={UUID}&d=%G1", FORM), 400),
    ("invalid escape in form name", post(f"uuid={UUID}&%q=1", FORM), 400),
    ("duplicate query field", get(f"uuid={UUID}&uuid={UUID}"), 400),
    ("duplicate query status", get(f"uuid={UUID}&status=ringing"
                                   f"&status=answered"), 400),
    ("duplicate form field", post(f"uuid={UUID}&to=1&to=1", FORM), 400),
    ("duplicate json field", post('{"uuid":"' + UUID
                                  + '","to":"1","to":"1"}'), 400),
    ("duplicate json field by escape",
     post('{"uuid":"' + UUID + '","status":"ringing","st\\u0061tus":"busy"}'),
     400),
    ("empty form name", post(f"uuid={UUID}&=x", FORM), 400),
    # Invalid UTF-8.
    ("invalid utf-8 in json", post(b'{"uuid":"' + UUID.encode()
                                   + b'","d":"\xff\xfe"}'), 400),
    ("invalid utf-8 in form", post(f"uuid={UUID}&d=%FF", FORM), 400),
    ("overlong utf-8 in query", get(f"uuid={UUID}&d=%C0%AF"), 400),
    ("utf-16 surrogate in query", get(f"uuid={UUID}&d=%ED%A0%80"), 400),
    ("truncated utf-8 in query", get(f"uuid={UUID}&d=%E2%82"), 400),
    ("code point past U+10FFFF", get(f"uuid={UUID}&d=%F4%90%80%80"), 400),
    # JSON shape.
    ("deep nesting", post(deep_nesting(30000)), 400),
    ("huge exponent", post('{"uuid":"' + UUID + '","n":1e999}'), 400),
    ("huge integer", post('{"uuid":"' + UUID + '","n":1' + "0" * 400 + "}"),
     400),
    ("array root", post("[]"), 400),
    ("string root", post('"uuid"'), 400),
    ("number root", post("42"), 400),
    ("null root", post("null"), 400),
    ("true root", post("true"), 400),
    ("trailing garbage", post(json_event() + "x"), 400),
    ("two objects", post(json_event() + json_event()), 400),
    ("empty json body", post(""), 400),
    ("empty form body", post("", FORM), 400),
    ("empty query", {"method": "GET", "path": events.EVENT_PATH}, 400),
    ("json of white space", post("  \n "), 400),
    ("empty object", post("{}"), 400),
    ("byte order mark", post(b"\xef\xbb\xbf" + json_event().encode()), 400),
    # Identifiers.
    ("control byte in json uuid", post('{"uuid":"ab\\u0001cd"}'), 400),
    ("newline in json uuid", post('{"uuid":"ab\\ncd"}'), 400),
    ("control byte in query uuid", get("uuid=ab%01cd"), 400),
    ("newline in query uuid", get("uuid=ab%0Acd"), 400),
    ("tab in form uuid", post("uuid=ab%09cd", FORM), 400),
    ("space in uuid", get("uuid=ab+cd"), 400),
    ("slash in uuid", get("uuid=ab%2Fcd"), 400),
    ("star in uuid", get("uuid=ab*"), 400),
    ("non-ascii uuid", get("uuid=%C3%A9t%C3%A9"), 400),
    ("uuid of 129 bytes", post(json.dumps({"uuid": "a" * 129})), 400),
    ("call_uuid of 129 bytes", get("call_uuid=" + "b" * 129), 400),
    ("conversation_uuid with braces",
     post('{"conversation_uuid":"CON-{x}"}'), 400),
    ("uuid is an object", post('{"uuid":{"id":"x"}}'), 400),
    ("uuid is true", post('{"uuid":true}'), 400),
    ("call_uuid is a number", post('{"call_uuid":7}'), 400),
    ("bad call_uuid beside a good uuid",
     post('{"uuid":"' + UUID + '","call_uuid":"a b"}'), 400),
    ("only an empty uuid", post('{"uuid":""}'), 400),
    ("only a null uuid", post('{"uuid":null,"status":"ringing"}'), 400),
    # Other fields.
    ("status is a number", post('{"uuid":"' + UUID + '","status":5}'), 400),
    ("status is an array", post('{"uuid":"' + UUID + '","status":["a"]}'),
     400),
    ("status of 65 bytes", get(f"uuid={UUID}&status={'s' * 65}"), 400),
    ("timestamp is a number",
     post('{"uuid":"' + UUID + '","timestamp":1764842400}'), 400),
    ("timestamp is a word", post(json_event(timestamp="yesterday")), 400),
    ("timestamp without seconds",
     post(json_event(timestamp="2026-12-04T10:00Z")), 400),
    ("timestamp with month 13",
     post(json_event(timestamp="2026-13-04T10:00:00.000Z")), 400),
    ("timestamp on February 30",
     post(json_event(timestamp="2026-02-30T10:00:00Z")), 400),
    ("timestamp on February 29 of 2026",
     post(json_event(timestamp="2026-02-29T10:00:00Z")), 400),
    ("timestamp at hour 24",
     post(json_event(timestamp="2026-12-04T24:00:00Z")), 400),
    ("timestamp before 1970",
     post(json_event(timestamp="1969-12-31T23:59:59Z")), 400),
    ("timestamp with empty fraction",
     post(json_event(timestamp="2026-12-04T10:00:00.Z")), 400),
    ("timestamp with trailing text",
     post(json_event(timestamp="2026-12-04T10:00:00Z now")), 400),
    ("timestamp with a bad offset",
     post(json_event(timestamp="2026-12-04T10:00:00+25:00")), 400),
    ("date only", get(f"uuid={UUID}&timestamp=2026-12-04"), 400),
    ("field name with a space", post('{"uuid":"' + UUID + '","a b":"x"}'),
     400),
    ("field name with a brace", get(f"uuid={UUID}&a%7Bb=x"), 400),
    ("field name of 65 bytes", get(f"uuid={UUID}&{'n' * 65}=x"), 400),
    ("101 fields", get("&".join([f"uuid={UUID}"]
                                + [f"f{i}=x" for i in range(100)])), 400),
]

# Near misses that must be stored: (name, request).
ACCEPTED = [
    ("mixed-case json media type with charset",
     post(json_event(), "Application/JSON; charset=utf-8")),
    ("form media type in capitals",
     post(f"uuid={UUID}&status=ringing", "APPLICATION/X-WWW-FORM-URLENCODED")),
    ("uuid of 128 bytes", post(json.dumps({"uuid": "a" * 128}))),
    ("call_uuid of 128 bytes", get("call_uuid=" + "b" * 128)),
    ("name of 64 bytes", get(f"uuid={UUID}&{'n' * 64}=x")),
    ("status of 64 bytes", get(f"uuid={UUID}&status={'s' * 64}")),
    ("100 fields", get("&".join([f"uuid={UUID}"]
                                + [f"f{i}=x" for i in range(99)]))),
    ("moderate nesting", post(deep_nesting(50))),
    ("timestamp with an offset",
     post(json_event(timestamp="2026-12-04T11:00:00+01:00"))),
    ("timestamp on February 29 of 2028",
     post(json_event(timestamp="2028-02-29T10:00:00Z"))),
    ("uuid with dots and colons", get("uuid=a.b:c_d-e")),
    ("json with white space",
     post('{ "uuid" : "' + UUID + '" ,\n "status" : "ringing" }')),
    ("unknown status", post(json_event(status="transferring"))),
]


def check_rejected(checks, stack, name, req, expected):
    client = stack.callhook.public()
    try:
        resp = events.send(client, req)
    except OSError as exc:
        checks.check(False, f"{name}: connection failed instead of "
                            f"{expected}: {exc!r}")
        return
    finally:
        client.close()
    checks.equal(resp.status, expected, f"{name}: status")
    if expected != 413 and req["method"] != "HEAD":
        try:
            error = resp.json().get("error")
        except (ValueError, AttributeError):
            error = None
        checks.check(isinstance(error, str) and error,
                     f"{name}: body should be {{\"error\": ...}}, got "
                     f"{resp.body[:120]!r}")
    if expected == 405:
        checks.equal(resp.headers.get("allow"), "GET, POST",
                     f"{name}: Allow header")
    events.barrier(stack.callhook)
    size = stack.db.dbsize()
    if not checks.equal(size, 0, f"{name}: DBSIZE after the request"):
        print(f"    keys: {stack.db.keys()}")
        stack.db.flushall()


def check_accepted(checks, stack, name, req):
    client = stack.callhook.public()
    resp = events.send(client, req)
    client.close()
    checks.equal(resp.status, 200, f"{name}: status")
    checks.equal(resp.body, b'{"result":"applied"}', f"{name}: body")
    key = events.event_key(req)
    checks.check(stack.db.command("EXISTS", key) == 1,
                 f"{name}: {key} was not stored")
    stack.db.flushall()


def body(checks):
    stack = Stack()
    for case in events.load_bad_requests():
        check_rejected(checks, stack, f"fixture {case['name']}",
                       case["request"], case["status"])
    for name, req, expected in REJECTED:
        check_rejected(checks, stack, name, req, expected)
    for name, req in ACCEPTED:
        check_accepted(checks, stack, name, req)

    resp = stack.callhook.public().get("/healthz")
    checks.equal(resp.status, 200, "healthz after the bad requests")
    stack.callhook.check_clean_exit(checks)


if __name__ == "__main__":
    run_test("bad_requests", body)
