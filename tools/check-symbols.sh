#!/usr/bin/env bash
# Fails unless every symbol that liburt.so exports starts with urt_ (and not
# urt__, the prefix of internal names shared between source files).
# Usage: tools/check-symbols.sh [path/to/liburt.so]   (default: build/liburt.so)
# Version nodes (absolute "A" entries) are not symbols and are ignored.
set -euo pipefail
lib=${1:-build/liburt.so}
if [ ! -e "$lib" ]; then
  echo "check-symbols: FAIL: $lib does not exist" >&2
  exit 1
fi
syms=$(nm -D --defined-only "$lib" | awk '$2 != "A" { print $3 }' | sed 's/@.*//' | sort -u)
if [ -z "$syms" ]; then
  echo "check-symbols: FAIL: $lib exports nothing" >&2
  exit 1
fi
bad=$(grep -v '^urt_' <<<"$syms" || true; grep '^urt__' <<<"$syms" || true)
if [ -n "$bad" ]; then
  echo "check-symbols: FAIL: $lib exports symbols outside the public urt_ namespace:" >&2
  sed 's/^/  /' <<<"$bad" >&2
  exit 1
fi
echo "check-symbols: PASS: $(wc -l <<<"$syms") exported symbols, all urt_*"
