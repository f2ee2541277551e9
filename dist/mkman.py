#!/usr/bin/env python3
"""Writes the callhook(1) man page from the program's own --help output.

The option list comes from the binary, so the page cannot drift from the
options it documents; the prose sections are written here.

    mkman.py CALLHOOK_BINARY OUTPUT VERSION
"""
import re
import subprocess
import sys

binary, output, version = sys.argv[1], sys.argv[2], sys.argv[3]
help_text = subprocess.run([binary, "--help"], capture_output=True, text=True,
                           check=True, env={}).stdout


def roff(text):
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return re.sub(r"^([.'])", r"\\&\1", text)


options = []
current = None
for line in help_text.splitlines():
    m = re.match(r"^  (--\S+)(?: (\S+))?\s{2,}(.*)$", line)
    if m:
        current = {"name": m.group(1), "arg": m.group(2) or "",
                   "help": m.group(3), "env": "", "default": ""}
        options.append(current)
        continue
    m = re.match(r"^  (--\S+)(?: (\S+))?$", line)
    if m:
        current = {"name": m.group(1), "arg": m.group(2) or "",
                   "help": "", "env": "", "default": ""}
        options.append(current)
        continue
    m = re.match(r"^\s+\[(\w+)\](?: default: (.*))?$", line)
    if m and current:
        current["env"] = m.group(1)
        current["default"] = m.group(2) or ""
        continue
    if current and not current["help"] and line.strip():
        current["help"] = line.strip()

out = []
add = out.append
add(f'.TH CALLHOOK 1 "" "callhook {version}" "User Commands"')
add(".SH NAME")
add("callhook \\- store Vonage Voice API call events in Redis")
add(".SH SYNOPSIS")
add(".B callhook\n[\\fIOPTION\\fR]...")
add(".br\n.B callhook status\n[\\fB\\-\\-redis\\fR \\fIURL\\fR] "
    "[\\fB\\-\\-json\\fR] \\fIUUID\\fR")
add(".br\n.B callhook watch\n[\\fB\\-\\-redis\\fR \\fIURL\\fR] "
    "[\\fB\\-\\-stream\\-key\\fR \\fIKEY\\fR]")
add(".SH DESCRIPTION")
add(roff("callhook receives the event and answer webhooks of the Vonage Voice "
         "API on one libevent loop and keeps an exact record of every call in "
         "Redis: the hash call:{UUID}, its history list call:{UUID}:events and "
         "the bookkeeping hash call:{UUID}:versions. A webhook is answered 200 "
         "only after Redis acknowledged the write, or after the event is "
         "durable in the local spool while Redis cannot take it."))
add(".PP")
add(roff("The status of a call only moves up: started, ringing, answered, "
         "disconnected, completed, then the outcomes busy, cancelled, "
         "unanswered, rejected, failed and timeout. Other fields take the "
         "value of the event with the latest timestamp. The result does not "
         "depend on the order in which events arrive, and the same event "
         "twice changes nothing."))
add(".SH OPTIONS")
add(roff("Every option can also be set by the environment variable shown; "
         "the command line wins."))
for o in options:
    add(".TP")
    head = f"\\fB{roff(o['name'])}\\fR"
    if o["arg"]:
        head += f" \\fI{roff(o['arg'])}\\fR"
    add(head)
    body = roff(o["help"])
    if o["env"]:
        body += f"\n.br\nEnvironment: \\fB{o['env']}\\fR."
    if o["default"]:
        body += f" Default: {roff(o['default'])}."
    add(body)
add(".SH SUBCOMMANDS")
add(".TP\n.B status")
add(roff("Prints one call's record and event history, readable or with "
         "--json as a JSON object."))
add(".TP\n.B watch")
add(roff("Follows the event stream and prints each status change as it "
         "happens, in colour on a terminal; it reconnects after a Redis "
         "restart and resumes after the last entry it printed."))
add(".TP\n.B dial")
add(roff("Checks one outbound call job and pushes it onto the Redis list "
         "dial:queue, where a callhook with the dialer on places the call; "
         "prints the job id. See callhook dial --help for its options."))
add(".SH SIGNALS")
add(".TP\n.BR SIGTERM \", \" SIGINT")
add(roff("Stop accepting connections, finish the Redis writes in flight "
         "(moving them to the spool after --shutdown-timeout), flush the "
         "spool and exit 0."))
add(".TP\n.B SIGUSR1\nMake the log one level more verbose.")
add(".TP\n.B SIGUSR2\nMake the log one level quieter.")
add(".SH FILES")
add(".TP\n.I spool/spool\\-NNNNNNNNNNNNNNNN.log")
add(roff("Events waiting for Redis, in the folder given by --spool-dir, "
         "replayed in order once Redis is back."))
add(".SH EXIT STATUS")
add(roff("0 after a clean shutdown or --help, 1 when startup fails (a "
         "listener cannot bind, the NCCO file is invalid), 2 for invalid "
         "options."))
add(".SH SEE ALSO")
add(".BR redis\\-cli (1),\n.BR redis\\-server (1)")

with open(output, "w") as f:
    f.write("\n".join(out) + "\n")
