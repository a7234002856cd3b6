#!/usr/bin/env bash
# Installs what urt needs on Debian 12 (liburing, Criterion, CMake, Ninja),
# plus any extra package names given as arguments. Skips apt when all are
# already installed.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config python3 liburing-dev libcriterion-dev "$@")
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo=sudo
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
