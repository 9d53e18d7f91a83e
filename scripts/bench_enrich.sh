#!/usr/bin/env bash
# Enrichment benchmark, side by side in one run: `redis-benchmark -t get` on this machine as
# the anchor for raw Redis GET throughput, then osprey's enrich operator (one partition,
# batches of 256) for 100 % in-process hits, 100 % Redis hits and 100 % misses served by a
# 10 ms HTTP origin with capacity 1 and 100, each ordered and unordered: records/s and the
# p50/p99 latency the operator adds to a record (its batch's time in the operator).
# Usage: scripts/bench_enrich.sh   (starts redis via scripts/services.sh when needed)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=services.sh
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! port_open 6379; then
  . scripts/services.sh
fi
export OSPREY_REDIS_URL="${OSPREY_REDIS_URL:-redis://127.0.0.1:6379}"
echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GB RAM, $(uname -sr)"
echo "== anchor: redis-benchmark -t get -n 200000 -q (50 clients, pipelining off)"
redis-benchmark -h 127.0.0.1 -p 6379 -t get -n 200000 -q | tr "\r" "\n" | grep "requests per second"
echo "== anchor: redis-benchmark -t get -n 1000000 -P 16 -q (pipelined 16)"
redis-benchmark -h 127.0.0.1 -p 6379 -t get -n 1000000 -P 16 -q | tr "\r" "\n" | grep "requests per second"
echo "== osprey enrich (OSPREY_ENRICH_TABLE=1 cargo bench --profile dev --bench enrich)"
OSPREY_ENRICH_TABLE=1 cargo bench --profile dev --quiet --bench enrich 2>/dev/null
