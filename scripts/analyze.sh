#!/usr/bin/env bash
# Static analysis of the host and the SDK header with cppcheck (Debian
# package; scripts/install-deps.sh --test installs it).  Exit 1 on any
# finding; scripts/test.sh runs it as a step.  About 10 s on 2 cores.
#
# The checks, chosen deliberately:
#   warning      bugs: leaks, NULL dereferences, uninitialised reads, bad
#                arguments to libc/SQLite/curl/OpenSSL functions
#   portability  code that depends on the platform or on undefined behaviour
#   performance  needless copies and the like, cheap to fix
# Not "style" (hundreds of matters of taste that the compiler's -Wall -Wextra
# -Werror and review already cover) nor "information" (missing system
# headers: the analysis reads only our own headers, which keeps it fast and
# its findings about our code).  The library files (--library) tell cppcheck
# what the POSIX, GNU, SQLite, curl and OpenSSL functions take and return;
# scripts/cppcheck/cjson.cfg spells out cJSON's one loop macro.
# Suppressions: scripts/cppcheck/suppressions.txt for whole checks, each with
# its reason; one finding at a time with "cppcheck-suppress <id>" on the line
# before it, with the reason beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cppcheck >/dev/null || { echo "analyze.sh: cppcheck is missing (scripts/install-deps.sh --test)" >&2; exit 1; }
exec cppcheck --quiet --error-exitcode=1 \
    --enable=warning,portability,performance \
    --std=c11 -D_GNU_SOURCE -I host/src -I sdk/include \
    --library=posix,gnu,sqlite3,libcurl,openssl,scripts/cppcheck/cjson.cfg \
    --suppressions-list=scripts/cppcheck/suppressions.txt --inline-suppr \
    --template='{file}:{line}: {severity} ({id}): {message}' \
    host/src sdk/include "$@"
