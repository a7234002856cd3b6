#!/usr/bin/env bash
# The echo benchmark: builds urt in release mode (build-release), then for
# each server mode, connection count and message size starts a fresh echo
# server on a free loopback port, drives it with urt-load (depth 1 by
# default), stops it with SIGTERM and waits for it. Prints a table and writes
# a CSV. Then the memory point: the server's RSS per idle connection, from
# its VmRSS before and after urt-load opens N connections, in two rows per
# mode: "never" (--idle: they send nothing) and "talked" (--idle-talk: each
# echoes 4 bytes once and then sends nothing, so each connection has run).
#
#   bench/echo.sh [--duration S] [--warmup S] [--conns 1,50,500,5000]
#                 [--sizes 64,4096] [--depth D] [--modes plain,pooled]
#                 [--workers W] [--load-workers W] [--server-cpus LIST]
#                 [--load-cpus LIST] [--idle-conns N] [--no-memory]
#                 [--server urt|tokio] [--csv PATH] [--no-build] [--quick]
#
# Defaults: 3 s per point after a 1 s warm-up, conns 1,50,500,5000, sizes
# 64,4096, depth 1, modes plain,pooled, workers: one per CPU (server and
# load generator alike; --load-workers sets the load generator's alone),
# 10,000 idle connections, no CPU pinning (--server-cpus/--load-cpus take a
# taskset list, e.g. 0 and 1). --server tokio runs bench/peers/tokio-echo
# instead (built with bench/peers/build.sh when missing; its mode reads
# "tokio"). --quick: 1 s points, conns 1,50, size 64, 1,000 idle
# connections (a CI smoke run). CSV: bench/results/echo-<date>.csv unless
# --csv is given. Exit status 1 when a point failed, reported a mismatch,
# or the server did not start or stop.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

duration=3
warmup=1
conns_list=1,50,500,5000
sizes_list=64,4096
depth=1
modes_list=plain,pooled
workers=""
load_workers=""
server_cpus=""
load_cpus=""
idle_conns=10000
memory=1
server_kind=urt
csv=""
build=1
quick=0

usage() {
    sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'
    exit "$1"
}

need() {
    [ $# -ge 2 ] || { echo "echo.sh: $1 needs a value" >&2; exit 2; }
}

while [ $# -gt 0 ]; do
    case "$1" in
        --duration) need "$@"; duration="$2"; shift 2 ;;
        --warmup) need "$@"; warmup="$2"; shift 2 ;;
        --conns) need "$@"; conns_list="$2"; shift 2 ;;
        --sizes) need "$@"; sizes_list="$2"; shift 2 ;;
        --depth) need "$@"; depth="$2"; shift 2 ;;
        --modes) need "$@"; modes_list="$2"; shift 2 ;;
        --workers) need "$@"; workers="$2"; shift 2 ;;
        --load-workers) need "$@"; load_workers="$2"; shift 2 ;;
        --server-cpus) need "$@"; server_cpus="$2"; shift 2 ;;
        --load-cpus) need "$@"; load_cpus="$2"; shift 2 ;;
        --idle-conns) need "$@"; idle_conns="$2"; shift 2 ;;
        --no-memory) memory=0; shift ;;
        --server) need "$@"; server_kind="$2"; shift 2 ;;
        --csv) need "$@"; csv="$2"; shift 2 ;;
        --no-build) build=0; shift ;;
        --quick)
            quick=1
            duration=1; warmup=0.5; conns_list=1,50; sizes_list=64; idle_conns=1000
            shift ;;
        -h|--help) usage 0 ;;
        *) echo "echo.sh: unknown argument '$1'" >&2; usage 2 ;;
    esac
done

num_re='^[0-9]+([.][0-9]+)?$'
int_re='^[1-9][0-9]*$'
list_re='^[1-9][0-9]*(,[1-9][0-9]*)*$'
[[ $duration =~ $num_re ]] || { echo "echo.sh: bad --duration '$duration'" >&2; exit 2; }
[[ $warmup =~ $num_re ]] || { echo "echo.sh: bad --warmup '$warmup'" >&2; exit 2; }
[[ $conns_list =~ $list_re ]] || { echo "echo.sh: bad --conns '$conns_list'" >&2; exit 2; }
[[ $sizes_list =~ $list_re ]] || { echo "echo.sh: bad --sizes '$sizes_list'" >&2; exit 2; }
[[ $depth =~ $int_re ]] || { echo "echo.sh: bad --depth '$depth'" >&2; exit 2; }
[[ $idle_conns =~ $int_re ]] || { echo "echo.sh: bad --idle-conns '$idle_conns'" >&2; exit 2; }
[ -z "$workers" ] || [[ $workers =~ $int_re ]] || { echo "echo.sh: bad --workers '$workers'" >&2; exit 2; }
[ -z "$load_workers" ] || [[ $load_workers =~ $int_re ]] || { echo "echo.sh: bad --load-workers '$load_workers'" >&2; exit 2; }
[ -n "$load_workers" ] || load_workers="$workers"
case "$server_kind" in
    urt) IFS=, read -r -a modes <<<"$modes_list"
         for m in "${modes[@]}"; do
             case "$m" in plain|pooled) ;; *) echo "echo.sh: bad mode '$m' (plain, pooled)" >&2; exit 2 ;; esac
         done ;;
    tokio) modes=(tokio) ;;
    *) echo "echo.sh: --server is urt or tokio" >&2; exit 2 ;;
esac
IFS=, read -r -a conns_arr <<<"$conns_list"
IFS=, read -r -a sizes_arr <<<"$sizes_list"
if [ -n "$server_cpus$load_cpus" ] && ! command -v taskset >/dev/null; then
    echo "echo.sh: --server-cpus/--load-cpus need taskset (util-linux)" >&2
    exit 2
fi

# ---- build -------------------------------------------------------------------
if [ "$build" -eq 1 ]; then
    bash tools/deps.sh
    cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DURT_BUILD_TESTS=OFF >/dev/null
    ninja -C build-release urt-load urt-echo >/dev/null
fi
load_bin="$root/build-release/urt-load"
case "$server_kind" in
    urt) server_bin="$root/build-release/urt-echo" ;;
    tokio)
        server_bin="$root/bench/peers/tokio-echo/target/release/tokio-echo"
        if [ ! -x "$server_bin" ] && [ "$build" -eq 1 ]; then
            bash bench/peers/build.sh >&2 || true
        fi ;;
esac
for b in "$load_bin" "$server_bin"; do
    [ -x "$b" ] || { echo "echo.sh: $b is missing" >&2; exit 2; }
done

# Both the server and the load generator may hold 10,000+ sockets.
hard="$(ulimit -Hn)"
if [ "$hard" = unlimited ]; then ulimit -n 1048576 2>/dev/null || true; else ulimit -n "$hard"; fi
nofile="$(ulimit -n)"
if [ "$memory" -eq 1 ] && [ "$nofile" != unlimited ] && [ "$idle_conns" -gt $((nofile - 100)) ]; then
    echo "echo.sh: RLIMIT_NOFILE is $nofile: idle connections lowered from $idle_conns to $((nofile - 100))" >&2
    idle_conns=$((nofile - 100))
fi

if [ -z "$csv" ]; then
    mkdir -p bench/results
    csv="bench/results/echo-$(date +%Y%m%d-%H%M%S).csv"
fi
mkdir -p "$(dirname "$csv")"

tmp="$(mktemp -d)"
server_pid=""
load_pid=""
cleanup() {
    # only the processes this script started, by pid
    for p in $load_pid $server_pid; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in $load_pid $server_pid; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

failed=0

# Command prefixes: taskset when pinned. Commands run straight from these
# arrays (not through a function) so that $! is the process itself.
server_pin=()
load_pin=()
[ -z "$server_cpus" ] || server_pin=(taskset -c "$server_cpus")
[ -z "$load_cpus" ] || load_pin=(taskset -c "$load_cpus")

# start_server MODE MAX_CONNS: starts the server on a free loopback port;
# sets server_pid and server_addr, or returns 1.
start_server() {
    local mode="$1" max_conns="$2" log="$tmp/server.log" args
    args=(--addr 127.0.0.1:0)
    [ -z "$workers" ] || args+=(--workers "$workers")
    if [ "$server_kind" = urt ]; then
        args+=(--mode "$mode" --max-conns "$max_conns")
    fi
    : >"$log"
    "${server_pin[@]}" "$server_bin" "${args[@]}" >"$log" 2>&1 &
    server_pid=$!
    server_addr=""
    for _ in $(seq 100); do
        server_addr="$(sed -n 's/^listening on \([^ ]*\).*/\1/p' "$log" | head -n1)"
        [ -n "$server_addr" ] && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "echo.sh: the $mode server did not start:" >&2
    sed 's/^/  | /' "$log" >&2
    stop_server
    return 1
}

# terminate PID NAME: SIGTERM, wait up to 10 s, then SIGKILL; sets term_rc
# to its exit status (137 when it had to be killed).
terminate() {
    local pid="$1" name="$2"
    term_rc=0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "echo.sh: $name (pid $pid) ignored SIGTERM for 10 s; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || term_rc=$?
}

# stop_server: terminate the server; a non-zero exit status is a failure.
stop_server() {
    [ -n "$server_pid" ] || return 0
    terminate "$server_pid" "the server"
    local rc=$term_rc
    server_pid=""
    if [ "$rc" -ne 0 ]; then
        echo "echo.sh: the server exited with status $rc" >&2
        sed 's/^/  | /' "$tmp/server.log" | tail -n 20 >&2
        failed=1
    fi
}

field() {   # field KEY LINE: the value of KEY=value in LINE
    printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"
}

vmrss_kb() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null
}

open_fds() {
    find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l
}

host="$(uname -n)"
date_iso="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "kind,date,server,mode,server_workers,load_workers,conns,size,depth,duration_s,msgs_per_s,mb_per_s,p50_us,p99_us,p999_us,errors,mismatches,status,rss_before_kb,rss_after_kb,rss_per_conn_bytes" >"$csv"

echo "echo benchmark: $server_kind server, $(nproc) CPUs on $host, workers ${workers:-one per CPU}" \
     "(load ${load_workers:-one per CPU}), ${duration}s points after ${warmup}s warm-up, depth $depth" \
     "${server_cpus:+, server on CPUs $server_cpus}${load_cpus:+, load on CPUs $load_cpus}"
printf '%-7s %6s %6s %11s %9s %10s %10s %7s\n' mode conns size msgs/s MB/s "p50 µs" "p99 µs" errors

# ---- throughput and latency ------------------------------------------------------
limit="$(awk -v d="$duration" -v w="$warmup" 'BEGIN { printf "%d", d + w + 60 }')"
for mode in "${modes[@]}"; do
    for c in "${conns_arr[@]}"; do
        for s in "${sizes_arr[@]}"; do
            status=ok
            if ! start_server "$mode" $((c + 1000)); then
                failed=1
                printf '%-7s %6s %6s %s\n' "$mode" "$c" "$s" "server did not start"
                echo "echo,$date_iso,$server_kind,$mode,$workers,$load_workers,$c,$s,$depth,$duration,,,,,,,,nostart,,," >>"$csv"
                continue
            fi
            args=(--addr "$server_addr" --conns "$c" --size "$s" --depth "$depth"
                  --duration "$duration" --warmup "$warmup")
            [ -z "$load_workers" ] || args+=(--workers "$load_workers")
            rc=0
            "${load_pin[@]}" timeout --kill-after=5 "$limit" "$load_bin" "${args[@]}" \
                >"$tmp/load.out" 2>"$tmp/load.err" </dev/null || rc=$?
            stop_server
            line="$(grep '^msgs_per_s=' "$tmp/load.out" | tail -n1 || true)"
            if [ -z "$line" ]; then
                status="rc$rc"
                failed=1
                printf '%-7s %6s %6s %s\n' "$mode" "$c" "$s" "urt-load failed (exit $rc)"
                sed 's/^/  | /' "$tmp/load.err" | tail -n 5
                echo "echo,$date_iso,$server_kind,$mode,$workers,$load_workers,$c,$s,$depth,$duration,,,,,,,,$status,,," >>"$csv"
                continue
            fi
            mps="$(field msgs_per_s "$line")"; mbps="$(field mb_per_s "$line")"
            p50="$(field p50_us "$line")"; p99="$(field p99_us "$line")"; p999="$(field p999_us "$line")"
            errs="$(field errors "$line")"; mism="$(field mismatches "$line")"
            note=""
            if [ "$rc" -ne 0 ]; then status="rc$rc"; failed=1; note="  (exit $rc)"; fi
            if [ "$mism" != 0 ]; then note="$note  MISMATCHES $mism"; failed=1; fi
            printf '%-7s %6s %6s %11.0f %9.2f %10.1f %10.1f %7s%s\n' \
                "$mode" "$c" "$s" "$mps" "$mbps" "$p50" "$p99" "$errs" "$note"
            echo "echo,$date_iso,$server_kind,$mode,$workers,$load_workers,$c,$s,$depth,$duration,$mps,$mbps,$p50,$p99,$p999,$errs,$mism,$status,,," >>"$csv"
        done
    done
done

# ---- memory per idle connection ----------------------------------------------------
if [ "$memory" -eq 1 ]; then
    echo
    echo "server RSS per idle connection, $idle_conns connections (never: connected and sent nothing;"
    echo "talked: echoed 4 bytes once, then sent nothing)"
    printf '%-7s %-7s %14s %14s %16s %13s\n' mode conns "RSS before" "RSS after" "per connection" "held/opened"
    hold="$(awk -v n="$idle_conns" 'BEGIN { printf "%d", 60 + n / 200 }')"
    for mode in "${modes[@]}"; do
      for kind in never talked; do
        status=ok
        idle_flag=--idle
        [ "$kind" = never ] || idle_flag=--idle-talk
        after=""
        if ! start_server "$mode" $((idle_conns + 1000)); then
            failed=1
            printf '%-7s %-7s %s\n' "$mode" "$kind" "server did not start"
            continue
        fi
        sleep 0.5
        before="$(vmrss_kb "$server_pid")"
        fds_before="$(open_fds "$server_pid")"
        # small, paced batches: nothing tells an idle client that the server
        # has accepted, so it must not get far ahead of the accept loop
        args=(--addr "$server_addr" --conns "$idle_conns" "$idle_flag" --duration "$hold" --batch 32 --pace 1)
        [ -z "$load_workers" ] || args+=(--workers "$load_workers")
        "${load_pin[@]}" "$load_bin" "${args[@]}" >"$tmp/idle.out" 2>"$tmp/idle.err" </dev/null &
        load_pid=$!
        opened=""
        for _ in $(seq $((hold * 10))); do
            opened="$(sed -n 's/^idle: \([0-9]*\) connections open.*/\1/p' "$tmp/idle.out")"
            [ -n "$opened" ] && break
            kill -0 "$load_pid" 2>/dev/null || break
            sleep 0.1
        done
        accepted=0
        if [ -n "$opened" ]; then
            # the server has taken them all when it holds that many more fds;
            # stop waiting once the count has not moved for a second
            last=-1; still=0
            for _ in $(seq 300); do
                accepted=$(( $(open_fds "$server_pid") - fds_before ))
                [ "$accepted" -ge "$opened" ] && break
                if [ "$accepted" -eq "$last" ]; then still=$((still + 1)); else still=0; last=$accepted; fi
                [ "$still" -ge 10 ] && break
                sleep 0.1
            done
            sleep 2.5   # past urt's hibernation threshold (1 s) and the next idle scan
            after="$(vmrss_kb "$server_pid")"
            accepted=$(( $(open_fds "$server_pid") - fds_before ))
        fi
        terminate "$load_pid" urt-load
        lrc=$term_rc
        load_pid=""
        stop_server
        if [ -z "$opened" ] || [ "$accepted" -le 0 ] || [ -z "$before" ] || [ -z "$after" ]; then
            failed=1
            printf '%-7s %-7s %s\n' "$mode" "$kind" "idle connections could not be opened (urt-load exit $lrc)"
            sed 's/^/  | /' "$tmp/idle.err" | tail -n 5
            echo "idle_rss,$date_iso,$server_kind,$mode/$kind,$workers,$load_workers,$idle_conns,0,0,,,,,,,,,failed,,," >>"$csv"
            continue
        fi
        per="$(awk -v a="$after" -v b="$before" -v n="$accepted" 'BEGIN { printf "%.0f", (a - b) * 1024 / n }')"
        if [ "$accepted" -ne "$idle_conns" ]; then
            status="accepted$accepted"
            echo "echo.sh: $mode/$kind: the server holds $accepted of $idle_conns connections (urt-load: $opened open)" >&2
        fi
        [ "$lrc" -eq 0 ] || { status="rc$lrc"; failed=1; }
        printf '%-7s %-7s %10.1f MiB %10.1f MiB %10.2f KiB %13s\n' "$mode" "$kind" \
            "$(awk -v k="$before" 'BEGIN { print k / 1024 }')" "$(awk -v k="$after" 'BEGIN { print k / 1024 }')" \
            "$(awk -v b="$per" 'BEGIN { print b / 1024 }')" "$accepted/$opened"
        echo "idle_rss,$date_iso,$server_kind,$mode/$kind,$workers,$load_workers,$accepted,0,0,,,,,,,,,$status,$before,$after,$per" >>"$csv"
      done
    done
fi

echo
echo "csv: $csv"
exit "$failed"
