#!/usr/bin/env python3
"""Writes a text file into a C source as a NUL-terminated char array."""
import sys

src, out, name = sys.argv[1], sys.argv[2], sys.argv[3]
with open(src, "rb") as f:
    data = f.read()
with open(out, "w") as f:
    f.write("/* Generated from %s; edit that file instead. */\n" % src.split("/")[-1])
    f.write("#include <stddef.h>\n")
    f.write("const char %s[] =\n" % name)
    for line in data.decode("utf-8").splitlines(True):
        esc = line.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        f.write('    "%s"\n' % esc)
    f.write(";\n")
    f.write("const size_t %s_len = sizeof(%s) - 1;\n" % (name, name))
