#!/usr/bin/env bash
# HTTP ingest benchmark: wrk with keep-alive POSTs one event to
# /api/events/process of a Release daemon on loopback, durable queue on.
#   bench/api.sh [seconds] [connections] [threads]
#   bench/api.sh --floor [seconds] [connections] [threads]
# --floor runs the same wrk against bench/http_floor.c instead: libmicrohttpd
# answering 202 and doing nothing else, the most any ingest can answer here.
# Needs wrk (Debian package, installed here when missing).  The event is the
# seed's file_upload when the web-client-upload source is built, else the
# timer's timer_fired.  Prints wrk's summary; docs/BENCHMARKS.md has figures.
set -euo pipefail
cd "$(dirname "$0")/.."
floor=0
[[ ${1:-} == --floor ]] && { floor=1; shift; }
secs=${1:-10} conns=${2:-64} threads=${3:-2}
scripts/install-deps.sh
command -v wrk >/dev/null || {
    sudo=(); [[ $(id -u) -ne 0 ]] && sudo=(sudo)
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq wrk >/dev/null
}
cmake -S . -B build/bench -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build build/bench -j"$(nproc)" >/dev/null
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$work"' EXIT
if [[ -d build/bench/plugins/event-sources/web-client-upload ]]; then
    body='{"event_type":"file_upload","source":"web-client-upload","data":{"filename":"document.pdf","file_size":102400,"content_type":"application/pdf","sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","stored_path":"uploads/x-document.pdf","user_id":"user-123","upload_id":"0b7e1c55-2f0e-4c2e-9a51-2f7b4f8f5d10","received_at":"2026-11-26T00:00:00.000Z"},"user_id":"user-123"}'
else
    body='{"event_type":"timer_fired","source":"timer","data":{"fired_at":"2025-11-19T10:30:00Z","timer_id":"bench","sequence":1}}'
fi
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
LUA
if ((floor)); then
    port=$((20000 + RANDOM % 20000))
    ./build/bench/bench/http_floor "$port" &
    pid=$!
    sleep 0.3
    wrk -t"$threads" -c"$conns" -d"${secs}s" --latency -s "$work/post.lua" \
        "http://127.0.0.1:$port/api/events/process"
    exit 0
fi
./build/bench/evhost run --data-dir "$work/data" --listen 127.0.0.1:0 --log-level warn \
    --print-config >/dev/null
./build/bench/evhost run --data-dir "$work/data" --listen 127.0.0.1:0 --log-level info \
    >"$work/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
    port=$(sed -n 's|.*API on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$work/daemon.log")
    [[ -n "$port" ]] && break
    sleep 0.1
done
[[ -n "$port" ]] || { cat "$work/daemon.log"; exit 1; }
curl -s -X POST -H 'Content-Type: application/json' -d "$body" \
    "http://127.0.0.1:$port/api/events/process"; echo
wrk -t"$threads" -c"$conns" -d"${secs}s" --latency -s "$work/post.lua" \
    "http://127.0.0.1:$port/api/events/process"
# what the daemon made of it: every answer must have been a 202
curl -s "http://127.0.0.1:$port/metrics" | grep -E '^evhost_events_(accepted|refused)_total' | head -5
