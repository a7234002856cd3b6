#!/usr/bin/env bash
# Fails when a URT_API declaration in include/urt.h has no comment block
# documenting it. A declaration is documented when a comment ends on the line
# right above it, or when it follows, with no blank line or other code in
# between, declarations that are (a group of related calls sharing one comment,
# like urt_spawn / urt_spawn_ex). A divider comment (/* ----- */) or a
# comment above a typedef or #define does not count.
# Usage: tools/check-docs.sh [header]   (default: include/urt.h)
set -euo pipefail
if [ $# -eq 0 ]; then
  cd "$(dirname "$0")/.."
  set -- include/urt.h
fi
header=$1
[ -r "$header" ] || { echo "check-docs: FAIL: cannot read $header"; exit 1; }
awk -v file="$header" '
function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
BEGIN { prev = "none"; in_comment = 0; in_decl = 0; n = 0; bad = 0 }
{
    line = trim($0)
    if (in_decl) {                        # continuation of a declaration
        if (index(line, ";")) in_decl = 0
        next
    }
    if (in_comment) {
        if (index(line, "*/")) { in_comment = 0; prev = "comment" }
        next
    }
    if (line == "") { prev = "blank"; next }
    if (line ~ /^URT_API[ \t]/) {
        if (!match(line, /urt_[A-Za-z0-9_]+[ \t]*\(/)) {
            printf "%s:%d: URT_API on something that is not a function declaration\n", file, NR
            bad++; prev = "other"; next
        }
        name = substr(line, RSTART, RLENGTH); sub(/[ \t]*\($/, "", name)
        n++
        if (prev == "comment" || prev == "doc_decl") {
            prev = "doc_decl"
        } else {
            printf "%s:%d: %s has no comment block above it (or above its group of declarations)\n", file, NR, name
            bad++; prev = "undoc_decl"
        }
        if (!index(line, ";")) in_decl = 1
        next
    }
    if (line ~ /^\/\//) { prev = "comment"; next }
    if (line ~ /^\/\*/) {
        if (index(line, "*/")) {
            body = line; gsub(/^\/\*|\*\/$/, "", body)
            prev = (body ~ /^[ \t-]*$/) ? "other" : "comment"   # a divider documents nothing
        } else {
            in_comment = 1
        }
        next
    }
    prev = "other"
}
END {
    if (n == 0) { printf "check-docs: FAIL: no URT_API declarations found in %s\n", file; exit 1 }
    if (bad) { printf "check-docs: FAIL: %d of %d URT_API declarations in %s are undocumented\n", bad, n, file; exit 1 }
    printf "check-docs: PASS: all %d URT_API declarations in %s are documented\n", n, file
}' "$header"
