#!/usr/bin/env bash
# Produce and consume throughput over SSL and SASL_SSL against PLAINTEXT, 1 KiB records, on
# a gateway (embedded store) with the three listeners, started afresh for each run. SASL_SSL
# authenticates with SCRAM-SHA-512 (a user from a users file, 4,096 PBKDF2 iterations), one
# exchange per connection, so it differs from SSL by a few round trips at the start. Two
# clients:
#   - kcat (the system's librdkafka, built with OpenSSL; the load client's vendored
#     librdkafka has no TLS): produces with acks=1 and linger.ms=5 from a file, consumes to
#     /dev/null. Its own TLS work is a large part of its CPU time on this machine;
#   - the lean client (benches/load, iggy-kafka-lean: the gateway's own codec, rustls with
#     ring, SCRAM-SHA-512 over SASL_SSL): one connection per phase, requests of 1,000
#     records with 5 in flight (LEAN_BATCH, LEAN_IN_FLIGHT), then Fetches from offset 0. Its
#     TLS cost is rustls's, a figure closer to what the gateway alone adds.
# Per round, each listener in turn, and for each listener each client in turn, gets a fresh
# gateway and a new one-partition topic: RECORDS records of 1,023 bytes produced, then
# consumed back from offset 0. Listeners and clients alternate within each round, so drift
# on the machine hits each alike. Prints every run (records/s, MiB/s, the gateway's and the
# client's CPU time for that phase and the hypervisor's steal share of the machine's CPU
# time) and, at the end, the median of each figure over the rounds with each listener's
# median rate as a share of PLAINTEXT's for the same client and phase.
#
#   benches/tls.sh                 # 3 rounds of 300,000 records (about 300 MiB)
#   ROUNDS=5 RECORDS=500000 benches/tls.sh
#   LISTENERS="PLAINTEXT SSL" benches/tls.sh    # a subset, in this order within each round
#   CLIENTS=lean benches/tls.sh    # one client only ("kcat lean" by default)
#   PORT=29192 benches/tls.sh      # listeners on PORT, PORT+1, PORT+2 (default 19192)
#   GATEWAY=/tmp/older/iggy-kafka-gateway benches/tls.sh   # another build (not rebuilt)
#   GATEWAY_ARGS="--ssl-cipher-suites TLS_AES_256_GCM_SHA384" benches/tls.sh
#   LEAN=/tmp/iggy-kafka-lean benches/tls.sh   # another lean client (not rebuilt)
#
# The certificate is made with the openssl command (EC P-256, self-signed and marked as no
# CA: rustls, unlike OpenSSL, refuses a CA certificate as the server's own), in a temporary
# directory.
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS="${RECORDS:-300000}"
ROUNDS="${ROUNDS:-3}"
LISTENERS="${LISTENERS:-PLAINTEXT SSL SASL_SSL}"
CLIENTS="${CLIENTS:-kcat lean}"
PORT="${PORT:-19192}"
PLAINTEXT_AT=127.0.0.1:$PORT SSL_AT=127.0.0.1:$((PORT + 1)) SASL_SSL_AT=127.0.0.1:$((PORT + 2))
LEAN_BATCH="${LEAN_BATCH:-1000}"
LEAN_IN_FLIGHT="${LEAN_IN_FLIGHT:-5}"

GATEWAY="${GATEWAY:-}"
GATEWAY_ARGS="${GATEWAY_ARGS:-}"
if [ -z "$GATEWAY" ]; then
  cargo build --release -q
  GATEWAY=target/release/iggy-kafka-gateway
fi
LEAN="${LEAN:-}"
if [ -z "$LEAN" ] && [[ " $CLIENTS " == *" lean "* ]]; then
  (cd benches/load && cargo build --release -q --bin iggy-kafka-lean)
  LEAN=benches/load/target/release/iggy-kafka-lean
fi
WORK=$(mktemp -d)
RESULTS="$WORK/results"
PID=
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; fi; }
trap 'stop; rm -rf "$WORK"' EXIT

( cd "$WORK"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -addext basicConstraints=critical,CA:FALSE \
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
    --listeners "PLAINTEXT://$PLAINTEXT_AT,SSL://$SSL_AT,SASL_SSL://$SASL_SSL_AT" \
    --ssl-certificate "$WORK/server.pem" --ssl-key "$WORK/server.key" \
    --users-file "$WORK/users.toml" &
  PID=$!
  sleep 1
  kill -0 "$PID" 2>/dev/null || { PID=; echo "the gateway did not start" >&2; exit 1; }
}

# Runs a client's command over a listener (its output dropped) and records "listener client
# phase records/s MiB/s cpu_ms client_cpu_ms".
measure() { # listener client phase command...
  local listener=$1 client=$2 phase=$3; shift 3
  local t0 c0 t1 c1 s0 s1
  read -r -a s0 <<<"$(steal_mark)"
  c0=$(ticks "$PID"); t0=$(now)
  /usr/bin/time -f "%U %S" -o "$WORK/time" "$@" >/dev/null
  t1=$(now); c1=$(ticks "$PID")
  read -r -a s1 <<<"$(steal_mark)"
  awk -v l="$listener" -v k="$client" -v p="$phase" -v n="$RECORDS" -v t0="$t0" -v t1="$t1" \
      -v cpu="$(( (c1 - c0) * 1000 / HZ ))" -v client="$(awk '{print ($1 + $2) * 1000}' "$WORK/time")" \
      -v steal="$(( (s1[0] - s0[0]) * 100 / (s1[1] - s0[1] + 1) ))" 'BEGIN {
    s = t1 - t0; r = n / s; m = n * 1023 / s / 1048576
    printf "%-10s %-5s %-8s %9.0f records/s %7.1f MiB/s  gateway CPU %5d ms  client CPU %5d ms  steal %2d%%\n", l, k, p, r, m, cpu, client, steal
    printf "%s %s %s %.0f %.1f %d %d\n", l, k, p, r, m, cpu, client >> "'"$RESULTS"'"
  }'
}

echo "== load average at start: $(cut -d" " -f1-3 /proc/loadavg)"
for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round"
  for listener in $LISTENERS; do
    case $listener in
      PLAINTEXT) boot=$PLAINTEXT_AT; security=(-X security.protocol=plaintext); lean=() ;;
      SSL) boot=$SSL_AT
        security=(-X security.protocol=ssl -X "ssl.ca.location=$WORK/server.pem")
        lean=("TLS_CA_FILE=$WORK/server.pem") ;;
      SASL_SSL) boot=$SASL_SSL_AT
        security=(-X security.protocol=SASL_SSL -X "ssl.ca.location=$WORK/server.pem"
          -X sasl.mechanisms=SCRAM-SHA-512 -X sasl.username=bench -X sasl.password=bench-secret)
        lean=("TLS_CA_FILE=$WORK/server.pem" SASL_MECHANISM=SCRAM-SHA-512 SASL_USERNAME=bench
          SASL_PASSWORD=bench-secret) ;;
      *) echo "unknown listener $listener" >&2; exit 2 ;;
    esac
    for client in $CLIENTS; do
      t="tls-bench-$$-$round-$listener-$client"
      start
      case $client in
        kcat)
          measure "$listener" kcat produce kcat -P -q -b "$boot" -t "$t" -p 0 "${security[@]}" \
            -X acks=1 -X linger.ms=5 -X queue.buffering.max.messages=1000000 -l "$WORK/records"
          measure "$listener" kcat consume sh -c 'b=$1 t=$2; shift 2
            kcat -C -q -e -o beginning -b "$b" -t "$t" -p 0 "$@" > /dev/null' kcat "$boot" "$t" "${security[@]}" ;;
        lean)
          # The lean client sends no Metadata, so the topic is made first (auto-created by a
          # Metadata request on the PLAINTEXT listener, outside the measurement).
          kcat -L -q -b "$PLAINTEXT_AT" -t "$t" >/dev/null
          for phase in produce consume; do
            measure "$listener" lean "$phase" env LOAD_PHASE="$phase" "${lean[@]}" \
              "$LEAN" "$boot" "$t" "$RECORDS" 1023 "$LEAN_BATCH" "$LEAN_IN_FLIGHT"
          done ;;
        *) echo "unknown client $client" >&2; exit 2 ;;
      esac
      stop
    done
  done
done

echo "== medians over $ROUNDS rounds"
awk '
  function median(a, key, n,   i, j, t, v) {
    for (i = 1; i <= n; i++) v[i] = a[key, i]
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
  }
  { key = $1 SUBSEP $2 SUBSEP $3; if (!(key in n)) order[++keys] = key
    i = ++n[key]; r[key, i] = $4 + 0; m[key, i] = $5 + 0; c[key, i] = $6 + 0; k[key, i] = $7 + 0 }
  END {
    for (x = 1; x <= keys; x++) rate[order[x]] = median(r, order[x], n[order[x]])
    # In the order of the runs: listener, then client, then phase.
    for (x = 1; x <= keys; x++) {
      key = order[x]; split(key, f, SUBSEP); base = "PLAINTEXT" SUBSEP f[2] SUBSEP f[3]
      printf "%-10s %-5s %-8s %9.0f records/s %7.1f MiB/s  gateway CPU %5d ms  client CPU %5d ms%s\n",
        f[1], f[2], f[3], rate[key], median(m, key, n[key]), median(c, key, n[key]), median(k, key, n[key]),
        f[1] != "PLAINTEXT" && rate[base] ? sprintf("  %.2f of PLAINTEXT", rate[key] / rate[base]) : ""
    }
  }' "$RESULTS"
