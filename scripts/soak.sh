#!/usr/bin/env bash
# The test suite again and again, with more tests at once than there are
# cores, for the races that one pass of scripts/test.sh shows once in a
# while (three this way so far: libmicrohttpd's quiesce, the sqlite step's
# WAL switch, the executions' dating).  Not part of the test command: it
# runs as long as it is told to.
#   scripts/soak.sh [SECONDS] [CONFIG...]
# SECONDS defaults to 1800; CONFIG is gcc, asan, clang or tsan (default all
# four), the configurations scripts/test.sh builds into build/test-CONFIG
# (run it once first).  Each is rebuilt, then they take turns until the time
# is up.  A failing run's output stays in build/soak/; exit 1 if any failed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-1800}
shift || true
configs=("$@")
[[ ${#configs[@]} -gt 0 ]] || configs=(gcc asan clang tsan)
for c in "${configs[@]}"; do
    if [[ ! -f build/test-$c/CTestTestfile.cmake ]]; then
        echo "soak: build/test-$c is missing: run scripts/test.sh once first" >&2
        exit 2
    fi
    cmake --build "build/test-$c" -j"$(nproc)" >/dev/null
done
root=$PWD
mkdir -p build/soak
jobs=$(($(nproc) + 1))
end=$((SECONDS + seconds))
runs=0 failed=0
while ((SECONDS < end)); do
    for c in "${configs[@]}"; do
        runs=$((runs + 1))
        log=$root/build/soak/$runs-$c.log
        reports=$root/build/soak/tsan-$runs
        mkdir -p "$reports"
        # the sanitizers' settings as in scripts/test.sh
        if (cd "build/test-$c" &&
            ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
            TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:log_path=$reports/report:suppressions=$root/scripts/tsan-suppressions.txt" \
                ctest --output-on-failure -j"$jobs" --timeout 600 -E browser_console \
                >"$log" 2>&1) && ! compgen -G "$reports/report.*" >/dev/null; then
            rm -f "$log"
            echo "run $runs ($c): passed"
        else
            failed=$((failed + 1))
            echo "run $runs ($c): FAILED, see $log:"
            grep -A20 'tests FAILED' "$log" | tail -n +2 | grep -v '^Errors\|^$' || true
            if compgen -G "$reports/report.*" >/dev/null; then
                echo "  ThreadSanitizer reports in $reports"
            fi
        fi
        rmdir "$reports" 2>/dev/null || true
    done
done
echo "soak: $runs run(s), $failed failed"
((failed == 0))
