#!/usr/bin/env bash
# The main job: builds urt in release mode and runs the scheduler benchmark
# (bench/sched), printing its table. Installs its dependencies first.
# Extra arguments go to bench/sched (e.g. --quick, --workers 1,2,4).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/deps.sh
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DURT_BUILD_TESTS=OFF >/dev/null
ninja -C build-release >/dev/null
./build-release/bench/sched "$@"
