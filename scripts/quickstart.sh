#!/usr/bin/env bash
# The README's first command: install what is missing, build, and run the
# daemon on its embedded default (built-in plugins, ./evhost-data).
# Extra arguments go to `evhost run`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF -DEVH_BENCH=OFF >/dev/null
cmake --build build -j"$(nproc)"
exec ./build/evhost run "$@"
