#!/usr/bin/env bash
# Builds the Tokio comparison peers (tokio-sched, tokio-echo) offline, from
# the crate sources that Debian's librust-*-dev packages put under
# /usr/share/cargo/registry. Nothing is downloaded.
#
#   bench/peers/build.sh            build both peers (release)
#   bench/peers/build.sh --check    only check that they can be built
#
# Binaries: bench/peers/<peer>/target/release/<peer>
#
# When cargo or the packaged crates are missing, prints
# "skipping tokio peers: <reason>" and exits 0. The packages needed:
#   apt-get install -y librust-tokio-dev
# (it provides every tokio feature used here: rt-multi-thread, sync, time,
# net, io-util, signal). Any cargo/rustc >= 1.63 works, including Debian's.
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
registry=/usr/share/cargo/registry
peers=(tokio-sched tokio-echo)
check_only=0

for arg in "$@"; do
    case "$arg" in
        --check) check_only=1 ;;
        -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build.sh: unknown argument '$arg'" >&2; exit 2 ;;
    esac
done

skip() {
    echo "skipping tokio peers: $*"
    exit 0
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

# Every crate pinned in the peers' Cargo.lock files must be present in the
# packaged registry, at exactly the locked version.
missing=()
for peer in "${peers[@]}"; do
    lock="$here/$peer/Cargo.lock"
    [ -f "$lock" ] || skip "$peer/Cargo.lock is missing"
    while read -r name version; do
        [ -f "$registry/$name-$version/Cargo.toml" ] || missing+=("$name-$version")
    done < <(awk '
        /^\[\[package\]\]/ { name = ""; ver = "" }
        /^name = /    { gsub(/"/, "", $3); name = $3 }
        /^version = / { gsub(/"/, "", $3); ver = $3 }
        /^source = /  { if (name != "" && ver != "") print name, ver }
    ' "$lock")
done
if [ "${#missing[@]}" -gt 0 ]; then
    uniq_missing="$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"
    skip "packaged crates missing from $registry: ${uniq_missing% } (apt-get install -y librust-tokio-dev)"
fi

if [ "$check_only" -eq 1 ]; then
    echo "tokio peers can be built: $("$cargo_bin" --version), rustc $rustc_ver, tokio $(ls -d "$registry"/tokio-1.* 2>/dev/null | sed 's|.*/tokio-||' | tr '\n' ' ')"
    exit 0
fi

export CARGO_NET_OFFLINE=true
status=0
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
