#!/usr/bin/env bash
# The main job: installs the dependencies, builds urt in release mode and runs
# the echo-server benchmark on loopback (urt-echo driven by urt-load over
# connections x message sizes, plain and pooled), printing its table and the
# RSS per idle connection. Extra arguments go to bench/echo.sh (e.g. --quick).
# The scheduler benchmark is build-release/bench/sched; the side-by-side
# comparison with Tokio, epoll and raw io_uring servers is bench/compare.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
exec bash bench/echo.sh "$@"
