#!/usr/bin/env bash
# Runs the same load against a 3-member cluster of etcd-rs and of Debian's etcd on loopback, one
# after the other, and prints each tool's report plus the members' peak RSS (VmHWM).
#
#   benchmark/scripts/compare.sh [perf-m] [perf-l] [put]      (default: all three)
#
# Needs release builds of `etcd`, `benchmark` (cargo build --release -p etcdserver -p benchmark)
# and /usr/bin/etcd, /usr/bin/etcdctl. Data dirs go under $BENCH_DIR (default /work/bench-tmp).
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGET=${CARGO_TARGET_DIR:-target}/release
BENCH_DIR=${BENCH_DIR:-/work/bench-tmp}
STEPS=${*:-perf-m perf-l put}
BASE=24000

start_cluster() { # binary
  local bin=$1 cluster="" i
  rm -rf "$BENCH_DIR" && mkdir -p "$BENCH_DIR"
  for i in 0 1 2; do cluster+="m$i=http://127.0.0.1:$((BASE + 10 * i + 1)),"; done
  for i in 0 1 2; do
    "$bin" --name "m$i" --data-dir "$BENCH_DIR/m$i" \
      --listen-client-urls "http://127.0.0.1:$((BASE + 10 * i))" \
      --advertise-client-urls "http://127.0.0.1:$((BASE + 10 * i))" \
      --listen-peer-urls "http://127.0.0.1:$((BASE + 10 * i + 1))" \
      --initial-advertise-peer-urls "http://127.0.0.1:$((BASE + 10 * i + 1))" \
      --initial-cluster "${cluster%,}" --initial-cluster-state new \
      --log-level error >"$BENCH_DIR/m$i.log" 2>&1 &
    PIDS+=($!)
  done
  ENDPOINTS="127.0.0.1:$BASE,127.0.0.1:$((BASE + 10)),127.0.0.1:$((BASE + 20))"
  for _ in $(seq 100); do
    /usr/bin/etcdctl --endpoints "$ENDPOINTS" endpoint health >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "cluster of $bin did not become healthy" >&2
  return 1
}

stop_cluster() {
  local pid
  for pid in "${PIDS[@]}"; do
    echo "  peak RSS of member $pid: $(awk '/VmHWM/ {print $2, $3}' /proc/"$pid"/status)"
  done
  kill "${PIDS[@]}" 2>/dev/null || true
  wait "${PIDS[@]}" 2>/dev/null || true
  PIDS=()
}
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT

for server in "$TARGET/etcd" /usr/bin/etcd; do
  for step in $STEPS; do
    PIDS=()
    echo "=== $server: $step"
    start_cluster "$server"
    case $step in
      # The progress bar redraws with \r; only the verdict lines are kept.
      perf-m|perf-l) /usr/bin/etcdctl --endpoints "$ENDPOINTS" check perf --load="${step#perf-}" 2>&1 \
             | tr '\r' '\n' | grep -E '^(PASS|FAIL)' || true ;;
      put) "$TARGET/benchmark" --endpoints "$ENDPOINTS" --clients 100 --conns 10 \
             put --total 50000 --key-size 8 --val-size 256 2>&1 | tail -25 ;;
    esac
    stop_cluster
  done
done
