#!/usr/bin/env bash
# Run every libFuzzer target for a bounded time each (tests/fuzz/README.md).
#   tests/fuzz/run.sh [SECONDS-PER-TARGET] [BUILD-DIR]
# SECONDS defaults to 20 (the whole set: about 2.5 minutes); BUILD-DIR to
# build/test-fuzz, configured with -DCMAKE_C_COMPILER=clang -DEVH_FUZZ=ON and
# built with --target evh_fuzzers.  EVH_FUZZ_TARGETS="schema events" runs
# only those.  Each target starts from a temporary copy of its committed
# corpus (tests/fuzz/corpus/<target>/): nothing is written to the source
# tree.  Exit 1 when any target found a crash, a leak, a timeout or ran out
# of memory; its input and log are then kept and their paths printed.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-20}
build=${2:-$root/build/test-fuzz}
[[ "$secs" =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [seconds-per-target] [build-dir]" >&2; exit 2; }
bins=("$build"/tests/fuzz/fuzz_*)
[[ -x "${bins[0]}" ]] || {
    echo "no fuzz targets in $build/tests/fuzz: cmake -S . -B $build -DCMAKE_C_COMPILER=clang" \
         "-DEVH_FUZZ=ON && cmake --build $build --target evh_fuzzers" >&2
    exit 2
}
work=$(mktemp -d "${TMPDIR:-/tmp}/evh-fuzz.XXXXXX")
keep=0
trap '[[ $keep == 1 ]] || rm -rf "$work"' EXIT

# A leak or a sanitizer report ends the run as a crash would; UBSan reports
# abort (the library is built with -fno-sanitize-recover=undefined).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=()
printf '%-12s %10s %8s %8s %7s  %s\n' target execs exec/s corpus seconds result
for bin in "${bins[@]}"; do
    name=${bin##*/fuzz_}
    if [[ -n "${EVH_FUZZ_TARGETS:-}" && " $EVH_FUZZ_TARGETS " != *" $name "* ]]; then
        continue
    fi
    corpus=$work/corpus-$name
    mkdir -p "$corpus" "$work/artifacts-$name"
    if [[ -d "$root/tests/fuzz/corpus/$name" ]]; then
        cp "$root/tests/fuzz/corpus/$name"/* "$corpus"/
    fi
    log=$work/$name.log
    start=$SECONDS
    rc=0
    # -timeout: one input taking 10 s is a hang; -rss_limit_mb: a blow-up
    # (an expansion the limits missed) is a finding, not a stalled machine.
    "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$work/artifacts-$name/" "$corpus" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    units=$(find "$corpus" -type f | wc -l)
    if [[ $rc -eq 0 ]]; then
        result=ok
    else
        result="FAILED (exit $rc)"
        failed+=("$name")
    fi
    printf '%-12s %10s %8s %8s %7s  %s\n' "$name" "${execs:-?}" "${rate:-?}" "$units" \
        "$((SECONDS - start))" "$result"
done

if [[ ${#failed[@]} -gt 0 ]]; then
    keep=1
    for name in "${failed[@]}"; do
        echo "--- fuzz_$name: $(ls "$work/artifacts-$name" | tr '\n' ' ')"
        grep -E 'ERROR|SUMMARY|runtime error|#[0-9]+ 0x' "$work/$name.log" | head -25 || true
        echo "    full log: $work/$name.log; inputs: $work/artifacts-$name/"
        echo "    reproduce: $build/tests/fuzz/fuzz_$name $work/artifacts-$name/<file>"
    done
    echo "fuzzing found problems in: ${failed[*]}" >&2
    exit 1
fi
echo "fuzzing: no crash, leak or timeout in ${secs}s per target"
