#!/usr/bin/env bash
# Install the Debian 12 packages evhost needs, only those missing.
#   scripts/install-deps.sh          build and run the daemon
#   scripts/install-deps.sh --test   also what the test suite needs
# Runs apt-get as root, through sudo when not root.  Non-interactive.
set -euo pipefail

# sqlite3: the shell the README and docs use to look into evhost.db
pkgs=(build-essential cmake pkg-config
      libcjson-dev libyaml-dev libsqlite3-dev libcurl4-openssl-dev
      libmicrohttpd-dev libssl-dev sqlite3)
if [[ "${1:-}" == "--test" ]]; then
    # libclang-rt-dev: clang's sanitizer and libFuzzer runtimes (build/test-fuzz)
    pkgs+=(libcmocka-dev clang libclang-rt-dev curl chromium fonts-dejavu-core cppcheck)
fi

missing=()
for p in "${pkgs[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "installing: ${missing[*]}"
sudo=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
