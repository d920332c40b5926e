#!/usr/bin/env bash
# Side-by-side throughput, latency and heap of raftline and the anchor
# libraries (hashicorp/raft, etcd raft v3.7 and v3.6, lni/dragonboat v3 and
# v4), run in interleaved rounds in one session so that machine drift hits
# all of them alike. Needs only Go and a module proxy. See docs/benchmarks.md.
#
#   bench/compare.sh                                   # full matrix, 3 rounds
#   ROUNDS=1 DURATION=3s bench/compare.sh
#   CONFIGS="tcp:true:256" LIBS="hashicorp raftline" bench/compare.sh
#   OUT=docs/benchmarks bench/compare.sh               # regenerate the docs' data and charts
#
# raftline runs as `go build ./bench` of this repository; every anchor runs
# the same workload through its adapter in bench/anchors/<lib> (one nested
# module per library, so the root module depends on none of them). Each
# config is "transport:durable:clients". Output: every JSON line, then the
# medians and raftline / best-anchor ratios; in $OUT: results.jsonl,
# summary.md, throughput.svg, latency.svg, heap.svg, machine.txt and one
# stderr log per run (logs/, diagnostics such as elections and CPU used by
# other processes during the window).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
NODES=${NODES:-3}
PAYLOAD=${PAYLOAD:-128}
LIBS=${LIBS:-"hashicorp etcd etcd36 dragonboat dragonboat4 raftline"}
CONFIGS=${CONFIGS:-"inmem:false:1 inmem:false:16 inmem:false:256 tcp:true:1 tcp:true:16 tcp:true:256 tcp:false:16"}
RUN_TIMEOUT=${RUN_TIMEOUT:-300} # seconds before a hung run is killed and counted as failed
OUT=${OUT:-$(mktemp -d /tmp/raftline-compare-XXXXXX)}

mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
bin=$(mktemp -d /tmp/raftline-compare-bin-XXXXXX)
trap 'rm -rf "$bin"' EXIT
results="$OUT/results.jsonl"
: >"$results"

echo "# building (first run downloads the anchors' modules)" >&2
(cd "$root" && go build -o "$bin/raftline" ./bench)
(cd "$root/bench/anchors" && go build -o "$bin/fsyncprobe" ./cmd/fsyncprobe && go build -o "$bin/report" ./cmd/report)
for lib in $LIBS; do
  case "$lib" in
    raftline) ;;
    # CGO_ENABLED=0: pebble then keeps its memtables and block cache in the
    # Go heap, so heap_peak_mb counts them like every other library's log.
    dragonboat|dragonboat4) (cd "$root/bench/anchors/$lib" && CGO_ENABLED=0 go build -o "$bin/$lib" .) ;;
    *) [ -d "$root/bench/anchors/$lib" ] || { echo "unknown lib $lib" >&2; exit 2; }
       (cd "$root/bench/anchors/$lib" && go build -o "$bin/$lib" .) ;;
  esac
done

{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "go: $(go version)"
  echo "kernel: $(uname -sr)"
  echo "cpus: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')"
  echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo 2>/dev/null)"
  echo "tmpdir: ${TMPDIR:-/tmp} on $(df -T "${TMPDIR:-/tmp}" | awk 'NR==2 {print $2 " " $1}')"
  echo "matrix: ROUNDS=$ROUNDS DURATION=$DURATION NODES=$NODES PAYLOAD=$PAYLOAD"
  echo "libs: $LIBS"
  echo "configs: $CONFIGS"
  echo "load at start: $(uptime)"
} | tee "$OUT/machine.txt"

"$bin/fsyncprobe" -n 300 -size 4096 | tee -a "$results"
"$bin/fsyncprobe" -n 300 -size 4096 -parallel "$NODES" | tee -a "$results"

for round in $(seq 1 "$ROUNDS"); do
  echo "# round $round of $ROUNDS, load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/machine.txt"
  for cfg in $CONFIGS; do
    IFS=: read -r transport durable clients <<<"$cfg"
    for lib in $LIBS; do
      args=(-nodes "$NODES" -transport "$transport" -durable="$durable" -clients "$clients" -payload "$PAYLOAD" -duration "$DURATION")
      case "$lib" in
        raftline) exe=("$bin/raftline") ;;
        *) exe=("$bin/$lib" -lib "$lib") ;;
      esac
      log="$OUT/logs/r$round-$transport-$durable-$clients-$lib.log"
      line=$(timeout "$RUN_TIMEOUT" "${exe[@]}" "${args[@]}" 2>"$log" | tail -n 1) || line=""
      case "$line" in
        "{"*) ;;
        *) line="{\"lib\":\"$lib\",\"nodes\":$NODES,\"transport\":\"$transport\",\"durable\":$durable,\"clients\":$clients,\"failed\":true}" ;;
      esac
      echo "$line" | tee -a "$results"
    done
  done
done
echo "load at end: $(uptime)" | tee -a "$OUT/machine.txt"

"$bin/report" -md "$OUT/summary.md" -svg "$OUT" \
  -title "$(date -u +%Y-%m-%d), $(nproc) CPUs, $ROUNDS round(s) of $DURATION, load at end $(cut -d' ' -f1-3 /proc/loadavg)" \
  "$results"
echo
echo "runs with a leader change inside the measured window (their numbers include it; see logs/):"
grep -lE "elections during window: true|leader changes seen during window: [1-9]" "$OUT"/logs/*.log | sed "s|^$OUT/logs/|  |; s|\.log$||" || echo "  none"
echo
echo "results, summary.md, charts and per-run logs in $OUT"
