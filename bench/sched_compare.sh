#!/usr/bin/env bash
# Runs bench/sched (urt) and the Tokio peer (bench/peers/tokio-sched) at the
# same worker counts, interleaved: for each round, for each worker count,
# urt then Tokio. Prints one key=value line per workload and worker count
# with the per-op medians over the rounds and the ratio urt/tokio, then a
# table.
#
#   bench/sched_compare.sh [--rounds R] [--workers N[,N...]] [--iters K]
#                          [--timeout-s S] [--urt PATH] [--tokio PATH]
#
# Defaults: 3 rounds, workers 2,4, 20 iterations, 20 s per workload.
# Both sides run with 8 busy1 tasks and 4 busy2 chains (upstream's numbers).
# A workload that times out for one side at one worker count is not run
# again for that side and count in later rounds; its row says TIMEOUT
# (Tokio 1.24's spawn_many_remote_busy2 does). The Tokio peer is built with
# bench/peers/build.sh when it is missing; when it cannot be built, only urt
# runs and the Tokio column reads n/a.
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
rounds=3
workers=2,4
iters=20
timeout_s=20
urt_bin="${URT_SCHED:-$root/build/bench/sched}"
tokio_bin="${TOKIO_SCHED:-$here/peers/tokio-sched/target/release/tokio-sched}"

usage() {
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit "$1"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --workers) workers="$2"; shift 2 ;;
        --iters) iters="$2"; shift 2 ;;
        --timeout-s) timeout_s="$2"; shift 2 ;;
        --urt) urt_bin="$2"; shift 2 ;;
        --tokio) tokio_bin="$2"; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "sched_compare.sh: unknown argument '$1'" >&2; usage 2 ;;
    esac
done

if [ ! -x "$urt_bin" ]; then
    echo "sched_compare.sh: $urt_bin not found; build first:" >&2
    echo "  cmake -S $root -B $root/build -G Ninja && ninja -C $root/build" >&2
    exit 2
fi
if [ ! -x "$tokio_bin" ]; then
    echo "# tokio peer missing: running bench/peers/build.sh"
    bash "$here/peers/build.sh" 2>&1 | sed 's/^/# /'
fi
have_tokio=1
[ -x "$tokio_bin" ] || { have_tokio=0; echo "# tokio peer unavailable: urt only"; }

results="$(mktemp)"
trap 'rm -f "$results"' EXIT

workloads="$("$urt_bin" --list | grep -v -x -e switch -e spawn_join -e wake_rtt)"
declare -A skip=()

# run_side IMPL N ROUND: runs one side at N workers, appends
# "IMPL WORKLOAD N VALUE" to $results (VALUE: per_op_ns, TIMEOUT or FAILED).
run_side() {
    local impl="$1" n="$2" round="$3" only="" w
    for w in $workloads; do
        [ -n "${skip[$impl/$n/$w]:-}" ] && continue
        only="${only:+$only,}$w"
    done
    [ -n "$only" ] || return 0
    local cmd
    if [ "$impl" = urt ]; then
        cmd=("$urt_bin" --workers "$n" --iters "$iters" --timeout-s "$timeout_s" --no-micro
             --busy1-tasks 8 --busy2-tasks 4 --only "$only")
    else
        cmd=("$tokio_bin" --workers "$n" --iters "$iters" --timeout-s "$timeout_s"
             --busy1-tasks 8 --busy2-tasks 4 --only "$only")
    fi
    echo "# round $round: $impl workers=$n"
    "${cmd[@]}" 2>&1 | while IFS= read -r line; do
        case "$line" in
            workload=*) ;;
            sched:*|tokio-sched:*) echo "#   $line"; continue ;;
            *) continue ;;
        esac
        local name value
        name="$(printf '%s\n' "$line" | sed -n 's/^workload=\([^ ]*\).*/\1/p')"
        case "$line" in
            *" TIMEOUT"*) value=TIMEOUT ;;
            *" FAILED"*) value=FAILED ;;
            *) value="$(printf '%s\n' "$line" | sed -n 's/.* per_op_ns=\([0-9.]*\).*/\1/p')" ;;
        esac
        echo "$impl $name $n ${value:-FAILED}" >>"$results"
        echo "#   $line"
    done
    # do not rerun what timed out
    while read -r i name wn value; do
        [ "$i" = "$impl" ] && [ "$wn" = "$n" ] && [ "$value" = TIMEOUT ] && skip[$impl/$n/$name]=1
    done <"$results"
    return 0
}

IFS=, read -r -a counts <<<"$workers"
for ((r = 1; r <= rounds; r++)); do
    for n in "${counts[@]}"; do
        run_side urt "$n" "$r"
        [ "$have_tokio" -eq 1 ] && run_side tokio "$n" "$r"
    done
done

order="$(printf '%s\n' "$workloads" | awk 'NF { printf "%s%s", (n++ ? " " : ""), $0 }')"
awk -v order="$order" -v counts="$workers" -v have_tokio="$have_tokio" '
function median(key,    n, i, j, t, a) {
    n = cnt[key]
    if (n == 0) return ""
    for (i = 1; i <= n; i++) a[i] = val[key, i]
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    if (n % 2) return a[(n + 1) / 2]
    return (a[n / 2] + a[n / 2 + 1]) / 2
}
function cell(key,    m) {
    m = median(key)
    if (m != "") return sprintf("%.2f", m)
    if (timeouts[key]) return "TIMEOUT"
    if (fails[key]) return "FAILED"
    return "n/a"
}
{
    key = $1 SUBSEP $2 SUBSEP $3
    if ($4 == "TIMEOUT") timeouts[key]++
    else if ($4 == "FAILED") fails[key]++
    else { cnt[key]++; val[key, cnt[key]] = $4 + 0 }
}
END {
    nw = split(order, wl, " ")
    nc = split(counts, wc, ",")
    nrow = 0
    for (c = 1; c <= nc; c++) {
        for (i = 1; i <= nw; i++) {
            ku = "urt" SUBSEP wl[i] SUBSEP wc[c]
            kt = "tokio" SUBSEP wl[i] SUBSEP wc[c]
            u = cell(ku); t = have_tokio ? cell(kt) : "n/a"
            ratio = "n/a"
            if (u ~ /^[0-9.]+$/ && t ~ /^[0-9.]+$/ && t + 0 > 0) ratio = sprintf("%.2f", u / t)
            printf "compare workload=%s workers=%s urt_per_op_ns=%s tokio_per_op_ns=%s ratio_urt_tokio=%s urt_rounds=%d tokio_rounds=%d\n", \
                wl[i], wc[c], u, t, ratio, cnt[ku], cnt[kt]
            nrow++
            rw[nrow] = wl[i]; rc[nrow] = wc[c]; ru[nrow] = u; rt[nrow] = t; rr[nrow] = ratio
        }
    }
    printf "\n%-26s %7s %14s %14s %10s\n", "workload", "workers", "urt ns/op", "tokio ns/op", "urt/tokio"
    for (i = 1; i <= nrow; i++)
        printf "%-26s %7s %14s %14s %10s\n", rw[i], rc[i], ru[i], rt[i], rr[i]
}' "$results"
