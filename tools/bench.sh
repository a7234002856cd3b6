#!/usr/bin/env bash
# The main job: urt side by side with its peers, in about 3 minutes on a
# 2-CPU machine once built (the first run also builds urt in release mode
# and the Rust peers, offline from Debian's packaged crates). Installs its
# dependencies (tools/deps.sh: urt's own, plus wrk, the Tokio and hyper
# crates, gnuplot, and Debian's cargo when no Rust toolchain is there), then
# runs bench/compare with:
#   echo    urt-echo (plain, pooled) beside tokio-echo, epoll-echo and the
#           raw io_uring server: 50 and 500 connections, 64 B, depth 1,
#           3 interleaved rounds of 1 s (msgs/s, p99, CPU per message,
#           ratios)
#   memory  RSS per idle connection, 1,000 connections per server
#   http    examples/http_server beside hyper-hello under wrk: 50 and 500
#           connections, 1 and 2 server workers (req/s, p50/p99, CPU per
#           request, urt/hyper)
# and the PNG plots; peers that cannot be built are named, with the reason,
# and left out. Extra arguments go to bench/compare and win over these (e.g.
# --rounds 5, --no-http; bench/README.md lists them). The urt-only echo
# table is bench/echo.sh; the scheduler comparison is bench/compare's
# default run or bench/sched_compare.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(wrk librust-tokio-dev librust-hyper-dev gnuplot-nox util-linux)
if ! command -v cargo >/dev/null && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
    pkgs+=(cargo)
fi
bash tools/deps.sh "${pkgs[@]}"
exec python3 bench/compare --servers urt-plain,urt-pooled,tokio,epoll,uring --conns 50,500 --sizes 64 \
    --depths 1 --rounds 3 --duration 1 --warmup 0.25 --idle-conns 1000 --no-sched \
    --http-conns 50,500 --http-workers 1,2 "$@"
