#!/usr/bin/env python3
"""Generate docs/reference.md from the comments in include/urt.h.

The header is the one source: every URT_API declaration with the comment
block above it (or above its group), under the header's section titles.
  tools/gen-api-doc.py            write docs/reference.md
  tools/gen-api-doc.py --check    fail if docs/reference.md is not up to date
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = os.path.join(ROOT, "include", "urt.h")
OUT = os.path.join(ROOT, "docs", "reference.md")


def comment_text(lines):
    """Strip comment markers from a /* ... */ block."""
    out = []
    for ln in lines:
        s = ln.strip()
        s = re.sub(r"^/\*+", "", s)
        s = re.sub(r"\*+/$", "", s)
        s = re.sub(r"^\* ?", "", s.strip())
        out.append(s.rstrip())
    while out and not out[0]:
        out.pop(0)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out)


def parse(text):
    lines = text.splitlines()
    items = []          # (kind, payload): ("section", title) | ("entry", (doc, [decls])) | ("type", code)
    i, n = 0, len(lines)
    pending_doc = None
    while i < n:
        s = lines[i].strip()
        if s.startswith("/*"):
            block = [lines[i]]
            while "*/" not in lines[i]:
                i += 1
                block.append(lines[i])
            i += 1
            body = comment_text(block)
            # a section title sits between two divider lines: /* ---- */ /* Title */ /* ---- */
            if re.fullmatch(r"-*", body.replace(" ", "")):
                pending_doc = None
                continue
            if (i < n and re.fullmatch(r"/\*\s*-+\s*\*/", lines[i].strip())
                    and i >= 2 and re.fullmatch(r"/\*\s*-+\s*\*/", lines[i - 2].strip())):
                items.append(("section", body))
                pending_doc = None
                continue
            m = re.match(r"-{2,}\s+(.*?)\s*-*$", body)
            if m:
                items.append(("section", m.group(1)))
                pending_doc = None
                continue
            pending_doc = body
            continue
        if s.startswith("URT_API"):
            decls = []
            while i < n and lines[i].strip().startswith("URT_API"):
                decl = lines[i].strip()
                while not decl.rstrip().endswith(";"):
                    i += 1
                    decl += " " + lines[i].strip()
                decls.append(re.sub(r"\s+", " ", decl.replace("URT_API ", "")))
                i += 1
            items.append(("entry", (pending_doc or "", decls)))
            pending_doc = None
            continue
        if s.startswith("typedef struct") and "{" in s:
            code = [lines[i]]
            depth = lines[i].count("{") - lines[i].count("}")
            while depth > 0:
                i += 1
                code.append(lines[i])
                depth += lines[i].count("{") - lines[i].count("}")
            items.append(("type", (pending_doc or "", "\n".join(code))))
            pending_doc = None
            i += 1
            continue
        if s.startswith("#"):
            pending_doc = None          # a comment above #defines documents them, not what follows
        elif s:
            pending_doc = None if not s.startswith("typedef") else pending_doc
        i += 1
    return items


def render(items):
    out = ["# urt API reference", "",
           "Generated from the comments in `include/urt.h` by `tools/gen-api-doc.py`;",
           "CI fails when this page and the header disagree. Conventions are at the top",
           "of the header: 0 or a count on success, `-errno` on failure; nothing touches",
           "`errno`; suspending calls are for tasks (`-EPERM` elsewhere unless stated).", ""]
    for kind, payload in items:
        if kind == "section":
            out += ["## " + payload, ""]
        elif kind == "type":
            doc, code = payload
            if doc:
                out += [doc, ""]
            out += ["```c", code, "```", ""]
        else:
            doc, decls = payload
            names = [re.search(r"(urt_\w+)\s*\(", d).group(1) for d in decls]
            out += ["### " + ", ".join("`%s`" % nm for nm in names), "", "```c"] + decls + ["```", ""]
            if doc:
                out += [doc, ""]
    return "\n".join(out).rstrip() + "\n"


def main():
    with open(HEADER) as f:
        doc = render(parse(f.read()))
    if "--check" in sys.argv[1:]:
        try:
            with open(OUT) as f:
                cur = f.read()
        except OSError:
            cur = ""
        if cur != doc:
            print("gen-api-doc: FAIL: docs/reference.md is out of date; run tools/gen-api-doc.py")
            return 1
        print("gen-api-doc: PASS: docs/reference.md matches include/urt.h")
        return 0
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write(doc)
    print("gen-api-doc: wrote docs/reference.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
