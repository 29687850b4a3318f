#!/usr/bin/env bash
# Times `snapshot restore` of a database of about $DB_MB MB (1 KiB values under unique keys,
# written with the benchmark tool) on Debian's etcd 3.4 and on etcd-rs: each server gets the
# same load on a single member, its snapshot is saved, and the snapshot is restored with the
# matching tool (/usr/bin/etcdctl 3.4 for etcd's bbolt file, our etcdctl for ours). Prints one
# table row per server: database size, snapshot size, save time, restore time.
#
#   DB_MB=1024 benchmark/scripts/restore.sh
#
# Needs release builds of `etcd`, `etcdctl` and `benchmark` (cargo build --release -p etcdserver
# -p etcdctl -p benchmark) and /usr/bin/etcd, /usr/bin/etcdctl. Files go under $BENCH_DIR
# (default /work/bench-restore); it is deleted at the start of each server's run and at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGET=${CARGO_TARGET_DIR:-target}/release
BENCH_DIR=${BENCH_DIR:-/work/bench-restore}
DB_MB=${DB_MB:-1024}
VAL_SIZE=1024
KEY_SIZE=16
# One put per KiB of values; keys are sequential, so each put is a new key.
TOTAL=$((DB_MB * 1024))
PORT=${PORT:-24500}
ENDPOINT="http://127.0.0.1:$PORT"
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; true' EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

run_server() { # label server etcdctl-for-restore
  local label=$1 server=$2 restorer=$3
  rm -rf "$BENCH_DIR" && mkdir -p "$BENCH_DIR"
  "$server" --name m0 --data-dir "$BENCH_DIR/m0" \
    --listen-client-urls "$ENDPOINT" --advertise-client-urls "$ENDPOINT" \
    --listen-peer-urls "http://127.0.0.1:$((PORT + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((PORT + 1))" \
    --initial-cluster "m0=http://127.0.0.1:$((PORT + 1))" \
    --quota-backend-bytes $((8 * 1024 * 1024 * 1024)) \
    --log-level error >"$BENCH_DIR/m0.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do
    /usr/bin/etcdctl --endpoints "$ENDPOINT" endpoint health >/dev/null 2>&1 && break
    sleep 0.2
  done
  "$TARGET/benchmark" put --endpoints "$ENDPOINT" --conns 8 --clients 64 --total "$TOTAL" \
    --key-size "$KEY_SIZE" --val-size "$VAL_SIZE" --sequential-keys --key-space-size "$TOTAL" \
    >"$BENCH_DIR/put.txt" 2>&1
  local db_size
  db_size=$(/usr/bin/etcdctl --endpoints "$ENDPOINT" endpoint status -w json |
    sed -E 's/.*"dbSize":([0-9]+).*/\1/')
  local t0 t1 t2
  t0=$(now)
  "$restorer" --endpoints "$ENDPOINT" snapshot save "$BENCH_DIR/snap.db" >/dev/null 2>&1
  t1=$(now)
  kill "$PID" && wait "$PID" 2>/dev/null || true
  PID=""
  rm -rf "$BENCH_DIR/m0"
  sync
  t1b=$(now)
  "$restorer" snapshot restore "$BENCH_DIR/snap.db" --name m0 \
    --initial-cluster "m0=http://127.0.0.1:$((PORT + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((PORT + 1))" \
    --data-dir "$BENCH_DIR/restored" >"$BENCH_DIR/restore.log" 2>&1
  t2=$(now)
  local snap_size restored_size
  snap_size=$(stat -c %s "$BENCH_DIR/snap.db")
  restored_size=$(stat -c %s "$BENCH_DIR/restored/member/snap/db")
  printf '%-10s | %9s MB | %9s MB | %9s MB | %8s s | %9s s\n' "$label" \
    $((db_size / 1000000)) $((snap_size / 1000000)) $((restored_size / 1000000)) \
    "$(elapsed "$t0" "$t1")" "$(elapsed "$t1b" "$t2")"
}

printf 'snapshot restore of a ~%s MB database (%s puts of %s-byte values)\n' "$DB_MB" "$TOTAL" "$VAL_SIZE"
printf '%-10s | %12s | %12s | %12s | %10s | %11s\n' server "db size" snapshot "restored db" save restore
# SERVERS="etcd-rs" (or "etcd34") runs one side only.
case " ${SERVERS:-etcd34 etcd-rs} " in *" etcd34 "*) run_server "etcd 3.4" /usr/bin/etcd /usr/bin/etcdctl ;; esac
case " ${SERVERS:-etcd34 etcd-rs} " in *" etcd-rs "*) run_server "etcd-rs" "$TARGET/etcd" "$TARGET/etcdctl" ;; esac
rm -rf "$BENCH_DIR"
