#!/usr/bin/env bash
# Build a release configuration and run the pipeline benchmark.  Extra
# arguments go to bench_pipeline (e.g. --count 500000 --sync full).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build/bench -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build build/bench -j"$(nproc)" --target bench_pipeline
exec ./build/bench/bench/bench_pipeline "$@"
