#!/usr/bin/env bash
# Runs the same load against a 3-member cluster of etcd-rs and of Debian's etcd on loopback, one
# after the other, and prints each tool's report plus the members' peak RSS (VmHWM).
#
#   benchmark/scripts/compare.sh [perf-m] [perf-l] [put] [put-auth] [put-tls] [put-corrupt-check]
#
# (default: perf-m perf-l put). `put-auth` is `put` with auth on and user root (simple tokens);
# `put-tls` is `put` with client and peer TLS (certificates made with openssl under $BENCH_DIR);
# `put-corrupt-check` is `put` with the leader's periodic corruption check every 2 s on both
# servers (ours runs it every 5 minutes by default; this shows what one check costs under load).
#
# Needs release builds of `etcd`, `benchmark` (cargo build --release -p etcdserver -p benchmark)
# and /usr/bin/etcd, /usr/bin/etcdctl. Data dirs go under $BENCH_DIR (default /work/bench-tmp).
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGET=${CARGO_TARGET_DIR:-target}/release
BENCH_DIR=${BENCH_DIR:-/work/bench-tmp}
STEPS=${*:-perf-m perf-l put}
BASE=24000
CERTS="$BENCH_DIR-certs"

# A CA and one certificate for 127.0.0.1 that serves as server, peer and client certificate.
make_certs() {
  [ -f "$CERTS/server.pem" ] && return 0
  mkdir -p "$CERTS"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
    -keyout "$CERTS/ca-key.pem" -out "$CERTS/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=root \
    -keyout "$CERTS/server-key.pem" -out "$CERTS/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >"$CERTS/ext.cnf"
  openssl x509 -req -in "$CERTS/server.csr" -CA "$CERTS/ca.pem" -CAkey "$CERTS/ca-key.pem" \
    -CAcreateserial -days 2 -extfile "$CERTS/ext.cnf" -out "$CERTS/server.pem" 2>/dev/null
}

start_cluster() { # binary tls(0|1) [extra server flags...]
  local bin=$1 tls=${2:-0} scheme=http cluster="" i tls_args=()
  shift 2
  local extra_args=("$@")
  rm -rf "$BENCH_DIR" && mkdir -p "$BENCH_DIR"
  CTL_TLS=()
  if [ "$tls" = 1 ]; then
    make_certs
    scheme=https
    tls_args=(--cert-file "$CERTS/server.pem" --key-file "$CERTS/server-key.pem"
      --trusted-ca-file "$CERTS/ca.pem" --client-cert-auth
      --peer-cert-file "$CERTS/server.pem" --peer-key-file "$CERTS/server-key.pem"
      --peer-trusted-ca-file "$CERTS/ca.pem" --peer-client-cert-auth)
    CTL_TLS=(--cacert "$CERTS/ca.pem" --cert "$CERTS/server.pem" --key "$CERTS/server-key.pem")
  fi
  for i in 0 1 2; do cluster+="m$i=$scheme://127.0.0.1:$((BASE + 10 * i + 1)),"; done
  for i in 0 1 2; do
    "$bin" --name "m$i" --data-dir "$BENCH_DIR/m$i" \
      --listen-client-urls "$scheme://127.0.0.1:$((BASE + 10 * i))" \
      --advertise-client-urls "$scheme://127.0.0.1:$((BASE + 10 * i))" \
      --listen-peer-urls "$scheme://127.0.0.1:$((BASE + 10 * i + 1))" \
      --initial-advertise-peer-urls "$scheme://127.0.0.1:$((BASE + 10 * i + 1))" \
      --initial-cluster "${cluster%,}" --initial-cluster-state new "${tls_args[@]}" "${extra_args[@]}" \
      --log-level error >"$BENCH_DIR/m$i.log" 2>&1 &
    PIDS+=($!)
  done
  ENDPOINTS="$scheme://127.0.0.1:$BASE,$scheme://127.0.0.1:$((BASE + 10)),$scheme://127.0.0.1:$((BASE + 20))"
  for _ in $(seq 100); do
    /usr/bin/etcdctl --endpoints "$ENDPOINTS" "${CTL_TLS[@]}" endpoint health >/dev/null 2>&1 && return 0
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
    extra=()
    [ "$step" = put-corrupt-check ] && extra=(--experimental-corrupt-check-time 2s)
    start_cluster "$server" "$([ "$step" = put-tls ] && echo 1 || echo 0)" "${extra[@]}"
    case $step in
      # The progress bar redraws with \r; only the verdict lines are kept.
      perf-m|perf-l) /usr/bin/etcdctl --endpoints "$ENDPOINTS" check perf --load="${step#perf-}" 2>&1 \
             | tr '\r' '\n' | grep -E '^(PASS|FAIL)' || true ;;
      put|put-tls|put-corrupt-check) "$TARGET/benchmark" --endpoints "$ENDPOINTS" "${CTL_TLS[@]}" --clients 100 --conns 10 \
             put --total 50000 --key-size 8 --val-size 256 2>&1 | tail -25 ;;
      put-auth)
        ctl=(/usr/bin/etcdctl --endpoints "$ENDPOINTS")
        "${ctl[@]}" user add root:bench >/dev/null
        "${ctl[@]}" auth enable >/dev/null
        "$TARGET/benchmark" --endpoints "$ENDPOINTS" --user root:bench --clients 100 --conns 10 \
             put --total 50000 --key-size 8 --val-size 256 2>&1 | tail -25 ;;
    esac
    stop_cluster
  done
done
