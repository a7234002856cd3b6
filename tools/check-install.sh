#!/usr/bin/env bash
# Installs a build of urt into a temporary prefix and builds a consumer
# program against the installed tree only, three ways, running each result:
#   1. pkg-config:          cc hello.c $(pkg-config --cflags --libs urt)
#   2. find_package(urt):   urt::urt        (the shared library)
#   3. find_package(urt):   urt::urt_static (liburt.a + liburing + pthreads)
# Also checks the installed files, the SONAME, the exported symbols, and
# that the man pages render without warnings.
# Prints one PASS/FAIL line per check; exits 1 if any failed.
# Usage: tools/check-install.sh [build-dir]   (default: build)
# Needs cmake, pkg-config, cc and liburing's development files.
set -uo pipefail
cd "$(dirname "$0")/.."
src=$PWD
build=$(cd "${1:-build}" 2>/dev/null && pwd) || { echo "check-install: FAIL: no build directory ${1:-build}"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/urt-check-install.XXXXXX")
# URT_KEEP_TMP=1 keeps the prefix and the consumer builds for a look afterwards
if [ "${URT_KEEP_TMP:-0}" = 1 ]; then echo "check-install: working in $tmp"; else trap 'rm -rf "$tmp"' EXIT; fi
prefix=$tmp/prefix
log=$tmp/log
failures=0

pass() { echo "check-install: PASS: $*"; }
fail() {
  echo "check-install: FAIL: $*"
  [ -s "$log" ] && sed 's/^/    /' "$log" | tail -n 40
  failures=$((failures + 1))
}
# run NAME CMD...: runs CMD with its output in $log; PASS/FAIL line for NAME
run() {
  local name=$1; shift
  if "$@" >"$log" 2>&1; then pass "$name"; else fail "$name"; fi
}
# run_example NAME EXE: runs a built consumer; exit 77 means no io_uring here
run_example() {
  local name=$1 exe=$2 rc=0
  LD_LIBRARY_PATH=$prefix/lib timeout 20 "$exe" >"$log" 2>&1 || rc=$?
  case $rc in
    0)  pass "$name" ;;
    77) echo "check-install: SKIP: $name (io_uring is not usable here)" ;;
    *)  fail "$name (exit $rc)" ;;
  esac
}

# ---- install ---------------------------------------------------------------
run "cmake --install into a temporary prefix" cmake --install "$build" --prefix "$prefix"
for f in lib/liburt.so lib/liburt.so.0 lib/liburt.a include/urt.h lib/pkgconfig/urt.pc \
         lib/cmake/urt/urtConfig.cmake lib/cmake/urt/urtConfigVersion.cmake lib/cmake/urt/urtTargets.cmake; do
  if [ -e "$prefix/$f" ]; then pass "installed $f"; else : >"$log"; fail "installed $f (missing)"; fi
done
# ---- man pages ----------------------------------------------------------------
# installed from docs/man (generated from urt.h); urt_spawn_ex.3 is a .so link
# to urt_spawn.3. Rendered with man -l where man works, else groff, with
# warnings on: any warning fails.
man3=$prefix/share/man/man3
for f in urt.3 urt_spawn.3 urt_spawn_ex.3; do
  if [ -e "$man3/$f" ]; then pass "installed share/man/man3/$f"; else : >"$log"; fail "installed share/man/man3/$f (missing)"; fi
done
render=""
if man --version >/dev/null 2>&1; then
  render=man
elif command -v groff >/dev/null 2>&1; then
  render=groff
fi
# render_page PAGE: the page (relative to the man root, so .so links resolve) as text on stdout, warnings on stderr
render_page() {
  if [ "$render" = man ]; then
    (cd "$prefix/share/man" && MANWIDTH=80 MAN_KEEP_FORMATTING= man --warnings -l "$1")
  else
    (cd "$prefix/share/man" && groff -man -Tutf8 -ww -P-cbou "$1")   # -P-cbou: plain text, no SGR or overstrike
  fi
}
if [ -z "$render" ]; then
  echo "check-install: SKIP: rendering the man pages (neither man nor groff is installed: apt-get install groff-base)"
elif [ -e "$man3/urt_spawn.3" ]; then
  for page in urt_spawn urt_spawn_ex; do
    render_page "man3/$page.3" >"$tmp/$page.txt" 2>"$log"
    if [ -s "$log" ]; then
      fail "$render renders man3/$page.3 without warnings"
    elif ! grep -q "urt_spawn_ex" "$tmp/$page.txt" || ! grep -q "SYNOPSIS" "$tmp/$page.txt"; then
      cp "$tmp/$page.txt" "$log"
      fail "$render renders man3/$page.3 (no urt_spawn_ex SYNOPSIS in what it printed)"
    else
      pass "$render renders man3/$page.3 without warnings"
    fi
  done
  bad=()
  for f in "$man3"/*.3; do
    render_page "man3/${f##*/}" >/dev/null 2>"$tmp/warn" || echo "exit $?" >>"$tmp/warn"
    [ -s "$tmp/warn" ] && { bad+=("${f##*/}"); cat "$tmp/warn"; }
  done >"$log"
  n=$(find "$man3" -name '*.3' | wc -l)
  if [ ${#bad[@]} -eq 0 ]; then pass "$render renders all $n installed man pages without warnings"; else fail "$render warns on ${bad[*]}"; fi
fi

soname=$(readelf -d "$prefix/lib/liburt.so" 2>/dev/null | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
: >"$log"
if [ "$soname" = liburt.so.0 ]; then pass "SONAME is liburt.so.0"; else fail "SONAME is '$soname', not liburt.so.0"; fi
run "exported symbols are all urt_*" bash "$src/tools/check-symbols.sh" "$prefix/lib/liburt.so"

cp "$src/examples/hello.c" "$tmp/hello.c"

# ---- 1. pkg-config -----------------------------------------------------------
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
if flags=$(pkg-config --cflags --libs urt 2>"$log"); then
  pass "pkg-config --cflags --libs urt: $flags"
  # shellcheck disable=SC2086  # the flags are words
  run "pkg-config: build hello" cc -std=c11 -Wall -Wextra -pedantic -Werror -o "$tmp/hello-pc" "$tmp/hello.c" $flags
  [ -x "$tmp/hello-pc" ] && run_example "pkg-config: run hello (shared)" "$tmp/hello-pc"
  static=$(pkg-config --static --libs urt 2>"$log") || true
  if [[ " $static " == *" -luring "* && " $static " == *" -lpthread "* ]]; then
    pass "pkg-config --static --libs urt: $static"
  else
    fail "pkg-config --static --libs urt gives '$static' (no -luring or -lpthread)"
  fi
else
  fail "pkg-config --cflags --libs urt"
fi
unset PKG_CONFIG_PATH

# ---- 2 and 3. find_package(urt) ---------------------------------------------
mkdir -p "$tmp/consumer"
cat >"$tmp/consumer/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.20)
project(urt_consumer C)
find_package(urt 0.1 REQUIRED)
add_executable(hello_shared ../hello.c)
target_link_libraries(hello_shared PRIVATE urt::urt)
add_executable(hello_static ../hello.c)
target_link_libraries(hello_static PRIVATE urt::urt_static)
CMAKE
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
run "find_package(urt): configure" cmake -S "$tmp/consumer" -B "$tmp/consumer/build" "${gen[@]}" \
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release
run "find_package(urt): build urt::urt and urt::urt_static consumers" cmake --build "$tmp/consumer/build"
if [ -x "$tmp/consumer/build/hello_shared" ]; then
  run_example "find_package(urt): run hello (urt::urt, shared)" "$tmp/consumer/build/hello_shared"
  : >"$log"
  if LD_LIBRARY_PATH=$prefix/lib ldd "$tmp/consumer/build/hello_shared" | grep -q "$prefix/lib/liburt.so.0"; then
    pass "hello_shared loads the installed liburt.so.0"
  else
    LD_LIBRARY_PATH=$prefix/lib ldd "$tmp/consumer/build/hello_shared" >"$log" 2>&1
    fail "hello_shared does not load $prefix/lib/liburt.so.0"
  fi
fi
if [ -x "$tmp/consumer/build/hello_static" ]; then
  run_example "find_package(urt): run hello (urt::urt_static)" "$tmp/consumer/build/hello_static"
  : >"$log"
  if ldd "$tmp/consumer/build/hello_static" | grep -q liburt; then
    ldd "$tmp/consumer/build/hello_static" >"$log" 2>&1
    fail "hello_static needs liburt.so"
  else
    pass "hello_static does not need liburt.so"
  fi
fi

if [ "$failures" -ne 0 ]; then
  echo "check-install: $failures check(s) FAILED"
  exit 1
fi
echo "check-install: all checks passed"
