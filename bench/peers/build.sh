#!/usr/bin/env bash
# Builds the comparison peers. First the C echo servers (epoll-echo,
# uring-echo) with cc; then the Tokio peers (tokio-sched, tokio-echo, and
# hyper-hello, the HTTP peer on hyper) offline, from the crate sources that
# Debian's librust-*-dev packages put under /usr/share/cargo/registry.
# Nothing is downloaded.
#
#   bench/peers/build.sh            build all peers (release)
#   bench/peers/build.sh --check    only check that they can be built
#   bench/peers/build.sh PEER...    only these (e.g. tokio-echo hyper-hello)
#
# Binaries: bench/peers/<peer>/<peer> for the C peers (CC and CFLAGS are
# honoured; uring-echo needs liburing: apt-get install liburing-dev),
# bench/peers/<peer>/target/release/<peer> for the Tokio peers.
#
# When cargo or the packaged crates are missing, prints
# "skipping tokio peers: <reason>" (or "skipping <peer>: <reason>" when only
# that peer's crates are missing) and exits 0 (1 if a C peer failed to
# build). The packages needed:
#   apt-get install -y librust-tokio-dev librust-hyper-dev
# (tokio provides every feature used here: rt-multi-thread, sync, time,
# net, io-util, signal; hyper 0.14 is hyper-hello's). Any cargo/rustc >= 1.63
# works, including Debian's.
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
registry=/usr/share/cargo/registry
peers=(tokio-sched tokio-echo hyper-hello)
check_only=0
want=()

for arg in "$@"; do
    case "$arg" in
        --check) check_only=1 ;;
        -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*|*/*) echo "build.sh: unknown argument '$arg'" >&2; exit 2 ;;
        *) [ -d "$here/$arg" ] || { echo "build.sh: no peer '$arg'" >&2; exit 2; }
           want+=("$arg") ;;
    esac
done
wanted() {      # no names given: every peer
    [ "${#want[@]}" -eq 0 ] && return 0
    local w
    for w in "${want[@]}"; do [ "$w" = "$1" ] && return 0; done
    return 1
}

c_status=0

# ---- C peers ----------------------------------------------------------------
cc_bin="${CC:-cc}"
c_flags="${CFLAGS:--O2 -g}"
build_c() {     # build_c NAME SOURCE EXTRA_LIBS...
    local name=$1 src=$2
    shift 2
    local out="$here/$name/$name"
    if [ "$check_only" -eq 1 ]; then
        echo "$name can be built: $("$cc_bin" --version | head -1)"
        return 0
    fi
    echo "building $name ($cc_bin $c_flags)"
    # shellcheck disable=SC2086
    if "$cc_bin" -std=c11 $c_flags -Wall -Wextra -o "$out" "$here/$name/$src" -pthread "$@"; then
        echo "built $out"
    else
        echo "build.sh: building $name failed" >&2
        c_status=1
    fi
}
if ! command -v "$cc_bin" >/dev/null 2>&1; then
    echo "skipping C peers: $cc_bin not found"
else
    wanted epoll-echo && build_c epoll-echo epoll_echo.c
    if ! wanted uring-echo; then
        :
    elif uring_libs="$(pkg-config --libs liburing 2>/dev/null)"; then
        # shellcheck disable=SC2086
        build_c uring-echo uring_echo.c $(pkg-config --cflags liburing) $uring_libs
    elif [ -f /usr/include/liburing.h ]; then
        build_c uring-echo uring_echo.c -luring
    else
        echo "skipping uring-echo: liburing not found (apt-get install -y liburing-dev)"
    fi
fi

# ---- Tokio peers -------------------------------------------------------------
chosen=()
for peer in "${peers[@]}"; do wanted "$peer" && chosen+=("$peer"); done
[ "${#chosen[@]}" -gt 0 ] || exit "$c_status"
peers=("${chosen[@]}")
skip() {
    echo "skipping tokio peers: $*"
    exit "$c_status"
}

cargo_bin="$(command -v cargo || true)"
if [ -z "$cargo_bin" ] && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
    cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin/cargo"
    export PATH="$(dirname "$cargo_bin"):$PATH"
fi
[ -n "$cargo_bin" ] || skip "cargo not found (rustup's toolchain or 'apt-get install cargo')"

rustc_bin="$(command -v rustc || true)"
[ -n "$rustc_bin" ] || skip "rustc not found next to $cargo_bin"
rustc_ver="$("$rustc_bin" --version 2>/dev/null | awk '{print $2}')"
rustc_minor="$(printf '%s' "$rustc_ver" | cut -d. -f2)"
case "$rustc_minor" in
    ''|*[!0-9]*) skip "cannot read the version of $rustc_bin" ;;
esac
[ "$rustc_minor" -ge 63 ] || skip "rustc $rustc_ver is older than 1.63"

[ -d "$registry" ] || skip "$registry is missing (apt-get install -y librust-tokio-dev)"

# Every crate pinned in a peer's Cargo.lock must be present in the packaged
# registry, at exactly the locked version; a peer whose crates are missing
# is skipped (all of them when even tokio's are).
package_of() { [ "$1" = hyper-hello ] && echo librust-hyper-dev || echo librust-tokio-dev; }
buildable=()
for peer in "${peers[@]}"; do
    lock="$here/$peer/Cargo.lock"
    [ -f "$lock" ] || skip "$peer/Cargo.lock is missing"
    missing=()
    while read -r name version; do
        [ -f "$registry/$name-$version/Cargo.toml" ] || missing+=("$name-$version")
    done < <(awk '
        /^\[\[package\]\]/ { name = ""; ver = "" }
        /^name = /    { gsub(/"/, "", $3); name = $3 }
        /^version = / { gsub(/"/, "", $3); ver = $3 }
        /^source = /  { if (name != "" && ver != "") print name, ver }
    ' "$lock")
    if [ "${#missing[@]}" -gt 0 ]; then
        uniq_missing="$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"
        echo "skipping $peer: packaged crates missing from $registry: ${uniq_missing% } (apt-get install -y $(package_of "$peer"))"
    else
        buildable+=("$peer")
    fi
done
[ "${#buildable[@]}" -gt 0 ] || skip "no peer's crates are all in $registry"
peers=("${buildable[@]}")

if [ "$check_only" -eq 1 ]; then
    echo "${peers[*]} can be built: $("$cargo_bin" --version), rustc $rustc_ver, tokio $(ls -d "$registry"/tokio-1.* 2>/dev/null | sed 's|.*/tokio-||' | tr '\n' ' ')"
    exit "$c_status"
fi

export CARGO_NET_OFFLINE=true
status=$c_status
for peer in "${peers[@]}"; do
    echo "building $peer ($("$cargo_bin" --version))"
    start=$(date +%s)
    # The peer's .cargo/config.toml points crates-io at the Debian registry;
    # cargo reads it from the current directory, hence the cd.
    if (cd "$here/$peer" && CARGO_TARGET_DIR="$here/$peer/target" \
            "$cargo_bin" build --release --offline --locked); then
        echo "built $here/$peer/target/release/$peer in $(( $(date +%s) - start ))s"
    else
        echo "build.sh: building $peer failed" >&2
        status=1
    fi
done
exit "$status"
