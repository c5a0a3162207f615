#!/usr/bin/env bash
# The README's second command (and what .ci/run runs): install what the
# tests need, run the static analysis (scripts/analyze.sh, cppcheck), then
# build and run every test in four configurations, then the fuzzers:
#   build/test-gcc    gcc, -Werror, the whole ctest suite
#   build/test-asan   gcc with AddressSanitizer + UndefinedBehaviorSanitizer
#   build/test-clang  clang, -Werror, the whole ctest suite
#   build/test-tsan   clang with ThreadSanitizer, the whole ctest suite
#   build/test-fuzz   clang with libFuzzer, ASan and UBSan: every target in
#                     tests/fuzz for 20 s (tests/fuzz/run.sh; about 2.5 min)
# Set EVH_TEST_QUICK=1 to run only the analysis and the first configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test
# The browser test's one npm package, as package-lock.json pins it
# (playwright-core: it downloads no browser, the test uses Debian's
# chromium).  Without npm or the registry the test reports itself skipped.
if [[ -f tests/browser/package-lock.json ]] && command -v npm >/dev/null; then
    (cd tests/browser && npm ci --ignore-scripts --no-audit --no-fund --prefer-offline \
        --loglevel=error </dev/null) || echo "npm ci failed in tests/browser: the browser test will be skipped"
fi

echo "=== static analysis: scripts/analyze.sh"
scripts/analyze.sh

jobs=$(nproc)
# Chained with && so that a failed step stops the configuration even where
# the caller tests its status (run_tsan), which turns off set -e inside.
run_config() {
    local dir=$1; shift
    echo "=== $dir: $*"
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug "$@" >/dev/null &&
        cmake --build "$dir" -j"$jobs" &&
        (cd "$dir" && ctest --output-on-failure -j"$jobs" --timeout 600)
}

# ThreadSanitizer: clang's runtime (gcc's gave the same clean result, about
# 40% slower).  Every process, the tests and the daemons they start, writes
# its reports to one folder, because a daemon's stderr is a log file in a
# test's temporary directory that nobody reads; halt_on_error makes the
# racing process exit at once (status 66), and any report fails the run even
# when the test that started the process did not notice.
run_tsan() {
    local dir=build/test-tsan
    local reports=$PWD/$dir/tsan-reports
    rm -rf "$reports" && mkdir -p "$reports"
    local rc=0
    TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:log_path=$reports/report:suppressions=$PWD/scripts/tsan-suppressions.txt" \
        run_config "$dir" -DCMAKE_C_COMPILER=clang -DEVH_TSAN=ON || rc=$?
    if compgen -G "$reports/report.*" >/dev/null; then
        cat "$reports"/report.*
        echo "ThreadSanitizer reported the above (files in $reports)"
        return 1
    fi
    return "$rc"
}

run_config build/test-gcc -DCMAKE_C_COMPILER=gcc
if [[ "${EVH_TEST_QUICK:-0}" != "1" ]]; then
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        run_config build/test-asan -DCMAKE_C_COMPILER=gcc -DEVH_SANITIZE=ON
    run_config build/test-clang -DCMAKE_C_COMPILER=clang
    run_tsan
    # libFuzzer's runtime comes with libclang-rt-dev (install-deps.sh --test);
    # only when it truly is not there is this configuration skipped.
    if echo 'int LLVMFuzzerTestOneInput(const char *d, long n) { return 0; }' |
        clang -x c -fsanitize=fuzzer,address,undefined -o /dev/null - 2>/dev/null; then
        echo "=== build/test-fuzz: clang, EVH_FUZZ=ON"
        cmake -S . -B build/test-fuzz -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang \
            -DEVH_FUZZ=ON >/dev/null
        cmake --build build/test-fuzz -j"$jobs" --target evh_fuzzers
        tests/fuzz/run.sh 20 build/test-fuzz
    else
        echo "=== build/test-fuzz: SKIPPED: clang cannot link -fsanitize=fuzzer" \
             "(libclang_rt.fuzzer is missing: install libclang-rt-dev)"
    fi
fi
echo "all test configurations passed"
