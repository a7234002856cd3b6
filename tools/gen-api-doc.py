#!/usr/bin/env python3
"""Generate docs/reference.md and the man pages from include/urt.h's comments.

The header is the one source: every URT_API declaration with the comment
block above it (or above its group), under the header's section titles.
  tools/gen-api-doc.py                    write docs/reference.md and docs/man/man3/
  tools/gen-api-doc.py --check            fail if either is not up to date
  tools/gen-api-doc.py --man DIR          write only the man pages, into DIR/man3/
  tools/gen-api-doc.py --man DIR --check  fail if the pages in DIR/man3/ are not up to date

Man pages (section 3): one page per documented group of declarations (the
calls under one comment block), named after its first call, with a .so
link page for each other call of the group, so that `man 3 urt_spawn_ex`
finds urt_spawn(3); plus urt(3), an overview from the header's opening
comment with every page listed by section. DIR/man3/ holds only generated
pages: a page the header no longer gives is removed.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = os.path.join(ROOT, "include", "urt.h")
OUT = os.path.join(ROOT, "docs", "reference.md")
MAN_DIR = os.path.join(ROOT, "docs", "man")
INTRO_LINES = 6   # a comment of this many lines or more above a #define is a family's narrative


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
            if pending_doc:
                # a comment that documents no declaration of its own: it
                # speaks about what follows in the section (the man pages
                # carry it; the reference page leaves it out)
                items.append(("intro", pending_doc))
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
            # a comment above #defines documents them, not what follows;
            # unless it is a long one: the narrative of a family that
            # happens to start with its constants
            if pending_doc and s.startswith("#define") and pending_doc.count("\n") >= INTRO_LINES:
                items.append(("intro", pending_doc))
            pending_doc = None
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
        elif kind == "entry":
            doc, decls = payload
            names = [re.search(r"(urt_\w+)\s*\(", d).group(1) for d in decls]
            out += ["### " + ", ".join("`%s`" % nm for nm in names), "", "```c"] + decls + ["```", ""]
            if doc:
                out += [doc, ""]
    return "\n".join(out).rstrip() + "\n"


# ---- man pages --------------------------------------------------------------

LABELS = re.compile(r"^(Context|Ownership|Returns|Errors)\b")


def first_comment(text):
    """The header's opening comment block, markers stripped."""
    m = re.match(r"\s*(/\*.*?\*/)", text, re.S)
    return comment_text(m.group(1).splitlines()) if m else ""


def header_version(text):
    parts = [re.search(r"#define\s+URT_VERSION_%s\s+(\d+)" % k, text) for k in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(p.group(1) for p in parts) if all(parts) else "?"


def header_defines(text):
    """[(name, raw lines)] for each public #define, with the short comment
    block right above it (the header's own lines, for a synopsis)."""
    lines = text.splitlines()
    out = []
    for i, ln in enumerate(lines):
        m = re.match(r"\s*#\s*define\s+(URT_\w+)", ln)
        if not m or m.group(1) in ("URT_H", "URT_API") or "(" in m.group(1):
            continue
        raw = [ln.rstrip()]
        j = i - 1
        if j >= 0 and lines[j].rstrip().endswith("*/"):
            k = j
            while k > 0 and "/*" not in lines[k]:
                k -= 1
            block = lines[k:j + 1]
            body = comment_text(block)
            if body and len(block) < INTRO_LINES and not re.fullmatch(r"-*", body.replace(" ", "")):
                raw = [b.rstrip() for b in block] + raw
        out.append((m.group(1), raw))
    return out


def esc(s):
    """Text for troff: backslashes, minus signs, and no control character
    at the start of a line."""
    s = s.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + s if s.startswith((".", "'")) else s


def bold_names(s, names):
    return re.sub(r"\burt_\w+\b", lambda m: "\\fB%s\\fR" % m.group(0) if m.group(0) in names else m.group(0), s)


def short_desc(doc):
    """The first sentence of a description, for the NAME line."""
    text = " ".join(doc.split())
    end, depth = len(text), 0
    for i, c in enumerate(text):
        depth += (c == "(") - (c == ")")
        if depth == 0 and c in ".;" and (i + 1 == len(text) or text[i + 1] == " ") and text[i - 1:i] != "." \
                and not re.search(r"\b(e\.g|i\.e|etc|vs)$", text[:i]):
            end = i
            break
    text = text[:end].strip()
    if len(text) > 90:
        cut = text[:87].rsplit(" ", 1)[0]
        while cut.count("(") > cut.count(")"):
            cut = cut[:cut.rindex("(")]   # no half of a parenthesis
        text = cut.rstrip(" ,;:(") + " ..."
    word = text.split(" ", 1)[0] if text else ""
    return text if len(word) > 1 and word.isupper() else text[:1].lower() + text[1:]   # keep CLOCK_..., NULL


def doc_blocks(doc):
    """Split a comment's text into blocks: ("p", label, [lines]) paragraphs
    (label: Context, Ownership, Returns... or None) and ("li", [lines])
    bullet items, in order."""
    blocks = []
    cur = None
    bullet_indent = None
    for raw in doc.splitlines():
        line = raw.rstrip()
        indent = len(line) - len(line.lstrip())
        text = line.strip()
        if not text:
            cur, bullet_indent = None, None
            continue
        if text.startswith("- "):
            cur = ["li", [text[2:]]]
            blocks.append(cur)
            bullet_indent = indent
            continue
        if bullet_indent is not None and indent > bullet_indent and cur and cur[0] == "li":
            cur[1].append(text)
            continue
        bullet_indent = None
        m = LABELS.match(text)
        if m or cur is None or cur[0] != "p":
            cur = ["p", m.group(1) if m else None, [text]]
            blocks.append(cur)
        else:
            cur[2].append(text)
    return blocks


def blocks_troff(blocks, names):
    out = []
    for b in blocks:
        if b[0] == "li":
            out += [".IP \\(bu 2"] + [bold_names(esc(t), names) for t in b[1]]
        else:
            out += [".PP"] + [bold_names(esc(t), names) for t in b[2]]
    return out


def wrap_decl(decl, width=78):
    """A declaration over several lines, broken after commas, the
    continuation lines under the first parameter."""
    if len(decl) <= width or "(" not in decl:
        return [decl]
    open_at = decl.index("(") + 1
    lines, cur = [], decl[:open_at]
    for part in re.split(r"(?<=,) ", decl[open_at:]):
        if len(cur) + len(part) + 1 > width and cur.strip():
            lines.append(cur.rstrip())
            cur = " " * open_at
        cur += part + " "
    lines.append(cur.rstrip())
    return lines


def synopsis_line(line, names):
    s = esc(line) if line.strip() else ""
    return re.sub(r"\b(urt_\w+)(\s*\()", lambda m: ("\\fB%s\\fR%s" % m.groups()) if m.group(1) in names else m.group(0), s) if s else ".sp"


def man_pages(text):
    """{file name: contents} of every man page the header gives."""
    items = parse(text)
    version = header_version(text)
    defines = header_defines(text)
    types = {}
    for kind, payload in items:
        if kind == "type":
            m = re.search(r"typedef struct (\w+)", payload[1])
            if m:
                types[m.group(1)] = payload[1]
    # pages: (section, names, doc, decls, intros)
    pages = []
    section, general, local, pending = None, [], None, []
    for kind, payload in items:
        if kind == "section":
            section, general, local, pending = payload, [], None, []
        elif kind == "intro":
            pending.append(payload)
        elif kind == "entry":
            if pending:
                general += pending[:-1]     # intros followed by intros speak for the rest of the section
                local = pending[-1]         # the last one for the entries up to the next intro
                pending = []
            doc, decls = payload
            names = [re.search(r"(urt_\w+)\s*\(", d).group(1) for d in decls]
            pages.append((section, names, doc, decls, general + ([local] if local else [])))
    all_names = {n for p in pages for n in p[1]}
    th = lambda name: ['.\\" Generated from include/urt.h by tools/gen-api-doc.py: do not edit.',
                       '.TH %s 3 "" "urt %s" "urt Manual"' % (name, version),
                       '.nh']   # never hyphenate: the text is full of identifiers
    files = {}
    for section, names, doc, decls, intros in pages:
        main = names[0]
        # synopsis: the structs the declarations take, the constants the
        # page names (URT_X or URT_X_*), then the declarations
        used_types = [t for t in types if any(re.search(r"\b%s\b" % t, d) for d in decls)]
        said = "\n".join([doc] + decls + [types[t] for t in used_types])
        used_defs = [raw for name, raw in defines
                     if re.search(r"\b%s\b" % name, said)
                     or any(name.startswith(p) for p in re.findall(r"\b(URT_\w+_)\*", said))]
        out = th(main) + [".SH NAME", esc("%s \\- %s" % (", ".join(names), short_desc(doc) or main)).replace("\\e\\-", "\\-"),
                          ".SH SYNOPSIS", ".nf", ".B #include <urt.h>"]
        for raw in used_defs:
            out += [".sp"] + [synopsis_line(l, all_names) for l in raw]
        for t in used_types:
            out += [".sp"] + [synopsis_line(l, all_names) for l in types[t].splitlines()]
        out += [".sp"]
        for d in decls:
            out += [synopsis_line(l, all_names) for l in wrap_decl(d)]
        out += [".fi"]
        blocks = doc_blocks(doc)
        desc = [b for b in blocks if not (b[0] == "p" and b[1] == "Returns")]
        ret = [b for b in blocks if b[0] == "p" and b[1] == "Returns"]
        if desc:
            out += [".SH DESCRIPTION"] + blocks_troff(desc, all_names)
        if ret:
            out += [".SH RETURN VALUE"] + blocks_troff(ret, all_names)
        if intros:
            out += [".SH NOTES"]
            for intro in intros:
                out += blocks_troff(doc_blocks(intro), all_names)
        # see also: the family's other pages (urt_mutex_*), else the section's
        family = "_".join(main.split("_")[:2]) + "_"
        near = [p[1][0] for p in pages if p[0] == section and p[1][0] != main]
        also = ["urt"] + ([n for n in near if n.startswith(family)] or near)
        out += [".SH SEE ALSO"] + [".BR \\%%%s (3)%s" % (esc(a), "," if i + 1 < len(also) else "")
                                   for i, a in enumerate(also)]
        files[main + ".3"] = "\n".join(out) + "\n"
        for other in names[1:]:
            files[other + ".3"] = ".so man3/%s.3\n" % main
    # urt(3): the overview
    out = th("urt") + [".SH NAME", "urt \\- multi\\-threaded work\\-stealing task executor with one io_uring ring per worker",
                       ".SH SYNOPSIS", ".nf", ".B #include <urt.h>", ".fi", ".PP",
                       "Link with \\fB\\-lurt\\fR (pkg\\-config: \\fBurt\\fR; CMake: \\fBfind_package(urt)\\fR).",
                       ".SH DESCRIPTION"]
    top = first_comment(text)
    top = re.sub(r"^urt\.h - (.)", lambda m: m.group(1).upper(), top)
    out += blocks_troff(doc_blocks(top), all_names)
    out += [".SH FUNCTIONS"]
    section = object()
    for sec, names, doc, decls, intros in pages:
        if sec != section:
            section = sec
            out += [".SS " + esc(sec or "Library")]
        out += [".TP", ".BR %s (3)" % names[0], esc(", ".join(names[1:]) + (": " if names[1:] else "") + short_desc(doc))]
    out += [".SH SEE ALSO", ".BR io_uring (7)"]
    files["urt.3"] = "\n".join(out) + "\n"
    return files


def man_sync(man_dir, files, check):
    """Write (or, with check, compare) DIR/man3/. Returns 0 or 1."""
    d = os.path.join(man_dir, "man3")
    have = {}
    if os.path.isdir(d):
        for f in os.listdir(d):
            if f.endswith(".3"):
                with open(os.path.join(d, f)) as fh:
                    have[f] = fh.read()
    rel = os.path.relpath(d, ROOT) if d.startswith(ROOT) else d
    if check:
        stale = sorted(f for f in files if have.get(f) != files[f])
        extra = sorted(f for f in have if f not in files)
        if stale or extra:
            print("gen-api-doc: FAIL: the man pages in %s are out of date (%s); run tools/gen-api-doc.py"
                  % (rel, ", ".join(stale[:5] + ["%s (no longer given)" % f for f in extra[:5]])
                     + (" ..." if len(stale) + len(extra) > 10 else "")))
            return 1
        print("gen-api-doc: PASS: %d man pages in %s match include/urt.h" % (len(files), rel))
        return 0
    os.makedirs(d, exist_ok=True)
    for f in have:
        if f not in files:
            os.remove(os.path.join(d, f))
    for f, body in files.items():
        if have.get(f) != body:
            with open(os.path.join(d, f), "w") as fh:
                fh.write(body)
    print("gen-api-doc: wrote %d man pages into %s" % (len(files), rel))
    return 0


def main():
    args = sys.argv[1:]
    check = "--check" in args
    man_dir = None
    if "--man" in args:
        i = args.index("--man")
        if i + 1 >= len(args) or args[i + 1].startswith("--"):
            print("usage: tools/gen-api-doc.py [--man DIR] [--check]")
            return 2
        man_dir = os.path.abspath(args[i + 1])
    with open(HEADER) as f:
        text = f.read()
    pages = man_pages(text)
    if man_dir:
        return man_sync(man_dir, pages, check)
    doc = render(parse(text))
    if check:
        try:
            with open(OUT) as f:
                cur = f.read()
        except OSError:
            cur = ""
        bad = man_sync(MAN_DIR, pages, True)
        if cur != doc:
            print("gen-api-doc: FAIL: docs/reference.md is out of date; run tools/gen-api-doc.py")
            return 1
        print("gen-api-doc: PASS: docs/reference.md matches include/urt.h")
        return bad
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write(doc)
    print("gen-api-doc: wrote docs/reference.md")
    return man_sync(MAN_DIR, pages, False)


if __name__ == "__main__":
    sys.exit(main())
