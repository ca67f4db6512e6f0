#!/usr/bin/env python3
"""Code-shape figures of the production C (lib, model, core, backends, cache, fs): functions
over 80 lines, files over 1000 lines, mutable globals (file-scope variables that are not
const). Run from the repository: python3 tests/tools/shape.py [ROOT] [v]  (v lists them).
A rough C reader (comments and strings blanked, braces counted), good for these counts."""
import re, sys, os, glob
root = sys.argv[1] if len(sys.argv) > 1 else "."
files = sorted(f for d in ("lib", "model", "core", "backends", "cache", "fs")
               for f in glob.glob(os.path.join(root, d, "*.c")))
def strip(src):
    src = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), src, flags=re.S)
    src = re.sub(r"//[^\n]*", "", src)
    src = re.sub(r'"(\\.|[^"\\\n])*"', '""', src)
    src = re.sub(r"'(\\.|[^'\\\n])*'", "''", src)
    return src
long_fns, big_files, globs = [], [], []
for f in files:
    raw = open(f).read()
    n = raw.count("\n")
    if n > 1000: big_files.append((n, os.path.relpath(f, root)))
    s = strip(raw)
    lines = s.split("\n")
    depth = 0; start = None; name = None
    for i, line in enumerate(lines):
        if depth == 0:
            m = re.match(r"^[A-Za-z_].*?\b([A-Za-z_]\w*)\s*\([^;]*$", line)
            if m and not line.startswith(("typedef", "struct", "enum", "union")) or (m and "(" in line and line.startswith(("static", "struct")) and "=" not in line):
                name = m.group(1); cand = i
            # globals
            g = re.match(r"^(static\s+)?(?!const\b)(?!extern\b)(?!typedef\b)(?!struct\s+\w+\s*\{)(?!enum\b)(?!#)([A-Za-z_][\w\s\*]*?)\b([A-Za-z_]\w*)\s*(\[[^\]]*\])*\s*(=[^;]*)?;\s*$", line)
            if re.match(r"^(static\s+)?(struct|union)\s*\{", line):
                globs.append((os.path.relpath(f, root), i + 1, line.strip() + " ...}"))
            if g and "(" not in line and "const" not in line.split("=")[0] and not line.startswith((" ", "\t")):
                globs.append((os.path.relpath(f, root), i + 1, line.strip()))
        opens = line.count("{"); closes = line.count("}")
        if depth == 0 and opens and name is not None:
            start = cand; fname = name
        depth += opens - closes
        if depth == 0 and start is not None and closes:
            length = i - start + 1
            if length > 80: long_fns.append((length, os.path.relpath(f, root), fname))
            start = None; name = None
        if depth == 0 and line.endswith(";"): name = None
mode = sys.argv[2] if len(sys.argv) > 2 else "summary"
print("functions over 80 lines: %d" % len(long_fns))
if mode == "v":
    for l, f, n in sorted(long_fns, reverse=True): print("  %4d %s %s" % (l, f, n))
print("files over 1000 lines: %d" % len(big_files))
for n, f in sorted(big_files, reverse=True): print("  %5d %s" % (n, f))
print("mutable globals: %d" % len(globs))
if mode == "v":
    for f, l, t in globs: print("  %s:%d %s" % (f, l, t))
