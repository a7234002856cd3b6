#!/usr/bin/env bash
# Runs urt's test suite three times: the normal build, ASan+UBSan, and TSan.
# Installs its dependencies first, and checks that every public function is
# documented and that docs/reference.md and the man pages are up to date.
# After the normal build's tests it installs that build into a temporary
# prefix and builds a program against it (tools/check-install.sh).
# Usage: tools/test.sh [normal|address|thread]...
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh g++ groff-base libssl-dev   # g++: urt.h is also compiled as C++; groff: the install check renders the man pages; libssl-dev: examples/tls_echo.c
bash tools/check-docs.sh
python3 tools/gen-api-doc.py --check   # docs/reference.md and docs/man/man3 are what include/urt.h gives
builds=("$@")
[ ${#builds[@]} -eq 0 ] && builds=(normal address thread)
jobs=$(nproc)
passed=0
for b in "${builds[@]}"; do
  san=""
  [ "$b" = normal ] || san="$b"
  dir="build-test-$b"
  echo "=== $b build ==="
  checked=OFF
  [ "$b" = address ] && checked=ON   # the ASan build is also the checked build
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DURT_WERROR=ON \
        -DURT_SANITIZE="$san" -DURT_CHECKED="$checked" -DURT_BUILD_BENCH=OFF >/dev/null
  ninja -C "$dir"
  # halt_on_error: a sanitizer report fails the test that caused it
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    ctest --test-dir "$dir" --output-on-failure -j "$jobs" --timeout 1200 | tee "$dir/ctest.out"
  n=$(sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' "$dir/ctest.out" | tail -n 1)
  passed=$((passed + ${n:-0}))
  if [ "$b" = normal ]; then
    echo "=== install check ==="
    bash tools/check-install.sh "$dir"
  fi
done

# The side-by-side benchmark, once, so it cannot rot: a short smoke run that
# asserts nothing about speed (it fails only if a server or the load
# generator breaks).
echo "=== bench/compare --quick ==="
python3 bench/compare --quick

# ctest stops the script on any failure (set -e, pipefail): reaching here
# means every test of every build passed.
echo "tests: $passed passed, 0 failed"
