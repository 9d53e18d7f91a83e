#!/usr/bin/env bash
# The core pipeline benchmark as a whole process, for records/s and peak memory (RSS):
# 1,000,000 JSON records (~100 bytes, 10,000 keys) from a file → per-key running stats in
# RocksDB → null sink, checkpoint every 10 s. Usage: scripts/bench_pipeline.sh [partitions]
set -euo pipefail
cd "$(dirname "$0")/.."
partitions="${1:-2}"
work="${TMPDIR:-/tmp}/osprey-bench-pipeline"
mkdir -p "$work"
input="$work/input.jsonl"
if [ ! -f "$input" ]; then
  python3 - "$input" <<'PY'
import sys
M = (1 << 64) - 1
def mix(x):
    x = (x + 0x9E3779B97F4A7C15) & M
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    return z ^ (z >> 31)
with open(sys.argv[1], "w") as f:
    for i in range(1_000_000):
        r = mix(i)
        temp = 20.0 + (mix(r) % 100_000) / 1000.0
        status = ("OK", "WARNING", "ERROR")[r % 3]
        f.write('{"sensor_id":"sensor-%05d","ts":%d,"temperature":%.3f,"status":"%s","seq":%d}\n'
                % (r % 10_000, 1_704_067_200_000 + i, temp, status, i))
PY
fi
cat > "$work/job.toml" <<EOF2
name = "bench"
[source]
type = "file"
path = "$input"
[record]
key = "sensor_id"
values = ["temperature"]
[runtime]
partitions = $partitions
[[operators]]
type = "stats"
[sink]
type = "null"
[state]
dir = "$work/data"
[checkpoint]
interval = "10s"
[metrics]
enabled = false
EOF2
cargo build --profile dev --quiet --bin osprey
bin="${CARGO_TARGET_DIR:-target}/debug/osprey"
rm -rf "$work/data"
start=$(date +%s.%N)
/usr/bin/time -v "$bin" --log-level warn run "$work/job.toml" 2> "$work/time.log"
end=$(date +%s.%N)
secs=$(echo "$end - $start" | bc -l)
rss=$(grep 'Maximum resident set size' "$work/time.log" | awk '{print $NF}')
printf 'records: 1000000  seconds: %.2f  records/s: %.0f  peak RSS: %.1f MiB  partitions: %s\n' \
  "$secs" "$(echo "1000000 / $secs" | bc -l)" "$(echo "$rss / 1024" | bc -l)" "$partitions"
