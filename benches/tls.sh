#!/usr/bin/env bash
# Produce and consume throughput over SSL and SASL_SSL against PLAINTEXT, 1 KiB records, on
# a gateway (embedded store) with the three listeners, started afresh for each run. SASL_SSL
# authenticates with SCRAM-SHA-512 (a user from a users file, 4,096 PBKDF2 iterations). The
# client is kcat (the system's librdkafka, built with OpenSSL; the load client's vendored
# librdkafka has no TLS). Per round, each listener in turn gets a new one-partition topic:
# RECORDS records produced with acks=1 from a file, then consumed back from offset 0 to
# /dev/null. Listeners alternate within each round, so drift on the machine hits each alike.
# Prints every run (records/s, MiB/s, the gateway's and kcat's CPU time for that phase and
# the hypervisor's steal share of the machine's CPU time) and, at the end, the median of
# each figure over the rounds.
#
#   benches/tls.sh                 # 3 rounds of 300,000 records (about 300 MiB)
#   ROUNDS=5 RECORDS=500000 benches/tls.sh
#   LISTENERS="PLAINTEXT SSL" benches/tls.sh    # a subset, in this order within each round
#   GATEWAY=/tmp/older/iggy-kafka-gateway benches/tls.sh   # another build (not rebuilt)
#   GATEWAY_ARGS="--ssl-cipher-suites TLS_AES_256_GCM_SHA384" benches/tls.sh
#
# The certificate is made with the openssl command (EC P-256), in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS="${RECORDS:-300000}"
ROUNDS="${ROUNDS:-3}"
LISTENERS="${LISTENERS:-PLAINTEXT SSL SASL_SSL}"

GATEWAY="${GATEWAY:-}"
GATEWAY_ARGS="${GATEWAY_ARGS:-}"
if [ -z "$GATEWAY" ]; then
  cargo build --release -q
  GATEWAY=target/release/iggy-kafka-gateway
fi
WORK=$(mktemp -d)
RESULTS="$WORK/results"
PID=
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; fi; }
trap 'stop; rm -rf "$WORK"' EXIT

( cd "$WORK"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout server.key -out server.pem 2>/dev/null
  printf '[[user]]\nname = "bench"\npassword = "bench-secret"\n' > users.toml )
# RECORDS lines of 1,023 bytes: kcat drops each newline, so each record's value is 1,023
# bytes, about 1 KiB.
awk -v n="$RECORDS" 'BEGIN { v = sprintf("%1023s", ""); gsub(/ /, "x", v); for (i = 0; i < n; i++) print v }' > "$WORK/records"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
now() { date +%s.%N; }
# The machine's CPU time taken by the hypervisor (steal), as "steal total" ticks of /proc/stat.
steal_mark() { awk '/^cpu /{print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }

# A fresh gateway for each run: the embedded store keeps every record in memory.
start() {
  # shellcheck disable=SC2086 # GATEWAY_ARGS is a list of options
  "$GATEWAY" --admin-listen off --log warn $GATEWAY_ARGS \
    --listeners PLAINTEXT://127.0.0.1:19192,SSL://127.0.0.1:19193,SASL_SSL://127.0.0.1:19194 \
    --ssl-certificate "$WORK/server.pem" --ssl-key "$WORK/server.key" \
    --users-file "$WORK/users.toml" &
  PID=$!
  sleep 1
}

# Runs a kcat command over a listener and records "listener phase records/s MiB/s cpu_ms
# client_cpu_ms".
measure() { # listener phase kcat-args...
  local listener=$1 phase=$2; shift 2
  local t0 c0 t1 c1 s0 s1
  read -r -a s0 <<<"$(steal_mark)"
  c0=$(ticks "$PID"); t0=$(now)
  /usr/bin/time -f "%U %S" -o "$WORK/time" "$@"
  t1=$(now); c1=$(ticks "$PID")
  read -r -a s1 <<<"$(steal_mark)"
  awk -v l="$listener" -v p="$phase" -v n="$RECORDS" -v t0="$t0" -v t1="$t1" \
      -v cpu="$(( (c1 - c0) * 1000 / HZ ))" -v client="$(awk '{print ($1 + $2) * 1000}' "$WORK/time")" \
      -v steal="$(( (s1[0] - s0[0]) * 100 / (s1[1] - s0[1] + 1) ))" 'BEGIN {
    s = t1 - t0; r = n / s; m = n * 1023 / s / 1048576
    printf "%-10s %-8s %9.0f records/s %7.1f MiB/s  gateway CPU %5d ms  kcat CPU %5d ms  steal %2d%%\n", l, p, r, m, cpu, client, steal
    printf "%s %s %.0f %.1f %d %d\n", l, p, r, m, cpu, client >> "'"$RESULTS"'"
  }'
}

echo "== load average at start: $(cut -d" " -f1-3 /proc/loadavg)"
for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round"
  for listener in $LISTENERS; do
    case $listener in
      PLAINTEXT) boot=127.0.0.1:19192; security=(-X security.protocol=plaintext) ;;
      SSL) boot=127.0.0.1:19193
        security=(-X security.protocol=ssl -X "ssl.ca.location=$WORK/server.pem") ;;
      SASL_SSL) boot=127.0.0.1:19194
        security=(-X security.protocol=SASL_SSL -X "ssl.ca.location=$WORK/server.pem"
          -X sasl.mechanisms=SCRAM-SHA-512 -X sasl.username=bench -X sasl.password=bench-secret) ;;
      *) echo "unknown listener $listener" >&2; exit 2 ;;
    esac
    t="tls-bench-$$-$round-$listener"
    start
    measure "$listener" produce kcat -P -q -b "$boot" -t "$t" -p 0 "${security[@]}" \
      -X acks=1 -X linger.ms=5 -X queue.buffering.max.messages=1000000 -l "$WORK/records"
    measure "$listener" consume sh -c 'b=$1 t=$2; shift 2
      kcat -C -q -e -o beginning -b "$b" -t "$t" -p 0 "$@" > /dev/null' kcat "$boot" "$t" "${security[@]}"
    stop
  done
done

echo "== medians over $ROUNDS rounds"
sort -k1,1 -k2,2 "$RESULTS" | awk '
  function median(a, n,   i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  function flush() { if (n) printf "%-10s %-8s %9.0f records/s %7.1f MiB/s  gateway CPU %5d ms  kcat CPU %5d ms\n", k1, k2, median(r, n), median(m, n), median(c, n), median(k, n); n = 0 }
  { if ($1 != k1 || $2 != k2) { flush(); k1 = $1; k2 = $2 } n++; r[n] = $3 + 0; m[n] = $4 + 0; c[n] = $5 + 0; k[n] = $6 + 0 }
  END { flush() }'
