#!/usr/bin/env bash
# Connections per second with SASL: reconnect storms against one gateway (release build,
# embedded store) with a SASL_PLAINTEXT listener, so that TLS's cost stays out. The client
# is benches/sasl-connect.py (Python's standard library over plain sockets): each
# connection does SaslHandshake and SaslAuthenticate, then closes. The one user's
# credentials come from a password in the users file (SCRAM-SHA-256 and SCRAM-SHA-512,
# 4,096 PBKDF2 iterations each); PLAIN is checked against the SCRAM-SHA-512 one. NONE, the
# baseline, connects to a PLAINTEXT listener of the same gateway, sends one ApiVersions and
# closes.
#
# Per round, for each number of workers in WORKERS and each mechanism in turn (so drift on
# the machine hits each alike): CONNECTIONS connections, then a line with connections/s,
# the gateway's CPU time per connection (each one authentication), the client's, and the
# hypervisor's steal share of the machine's CPU time. At the end, the median of each figure
# over the rounds.
#
#   benches/sasl-connect.sh                          # 3 rounds of 1,000 connections, 1 and 4 workers
#   ROUNDS=5 CONNECTIONS=2000 WORKERS="1 2 8" benches/sasl-connect.sh
#   CACHE_SALTED=1 benches/sasl-connect.sh           # SCRAM clients salt the password once
#
# With IGGY set to an iggy:// URL (with options, e.g. ?tls=true&tls_ca_file=...), the
# gateway runs on that Iggy server without a users file, so PLAIN is checked by a login to
# Iggy with the URL's own user and password (the first connection's; the others are
# remembered); MECHANISMS defaults to "NONE PLAIN", and with IGGY_PID the Iggy server's CPU
# time per connection is printed too (Iggy hashes a login's password with Argon2).
#
#   IGGY='iggy://iggy:iggy@127.0.0.1:8090' IGGY_PID=$(pidof iggy-server) benches/sasl-connect.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS="${CONNECTIONS:-1000}"
ROUNDS="${ROUNDS:-3}"
WORKERS="${WORKERS:-1 4}"
IGGY="${IGGY:-}"
if [ -n "$IGGY" ]; then DEFAULT_MECHANISMS="NONE PLAIN"; else DEFAULT_MECHANISMS="NONE PLAIN SCRAM-SHA-256 SCRAM-SHA-512"; fi
MECHANISMS="${MECHANISMS:-$DEFAULT_MECHANISMS}"
CACHE=()
if [ -n "${CACHE_SALTED:-}" ]; then CACHE=(--cache-salted); fi

cargo build --release -q
WORK=$(mktemp -d)
RESULTS="$WORK/results"
PID=
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=; fi; }
trap 'stop; rm -rf "$WORK"' EXIT

USER_NAME=bench USER_PASSWORD=bench-secret
if [ -n "$IGGY" ]; then
  # The URL's user logs in through the gateway: iggy://USER:PASSWORD@...
  userinfo="${IGGY#*://}"; userinfo="${userinfo%@*}"
  USER_NAME="${userinfo%%:*}" USER_PASSWORD="${userinfo#*:}"
  target/release/iggy-kafka-gateway --admin-listen off --log warn \
    --listeners SASL_PLAINTEXT://127.0.0.1:19195,PLAINTEXT://127.0.0.1:19196 \
    --iggy "$IGGY" --stream "bench-sasl-$$" &
else
  printf '[[user]]\nname = "bench"\npassword = "bench-secret"\n' > "$WORK/users.toml"
  target/release/iggy-kafka-gateway --admin-listen off --log warn \
    --listeners SASL_PLAINTEXT://127.0.0.1:19195,PLAINTEXT://127.0.0.1:19196 --users-file "$WORK/users.toml" &
fi
PID=$!
iggy_cpu() { if [ -n "${IGGY_PID:-}" ]; then awk '{ print $14 + $15 }' "/proc/$IGGY_PID/stat"; fi; }
TICK=$(getconf CLK_TCK)
# Listening once the backend is open (the Iggy backend connects first).
for _ in $(seq 1 300); do (exec 3<>/dev/tcp/127.0.0.1/19195) 2>/dev/null && break; sleep 0.1; done

echo "== load average at start: $(cut -d" " -f1-3 /proc/loadavg)"
for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round"
  for c in $WORKERS; do
    for m in $MECHANISMS; do
      port=19195; if [ "$m" = NONE ]; then port=19196; fi
      before=$(iggy_cpu)
      benches/sasl-connect.py --bootstrap "127.0.0.1:$port" --user "$USER_NAME" --password "$USER_PASSWORD" \
        --mechanism "$m" -n "$CONNECTIONS" -c "$c" --pid "$PID" "${CACHE[@]}" | tee -a "$RESULTS"
      if [ -n "${IGGY_PID:-}" ]; then
        after=$(iggy_cpu)
        echo "   Iggy server: $(awk -v t=$((after - before)) -v hz="$TICK" -v n="$CONNECTIONS" 'BEGIN { printf "%.3f CPU-ms per connection", t * 1000 / hz / n }')"
      fi
    done
  done
done

echo "== medians over $ROUNDS rounds"
# Lines: MECHANISM N connections C workers: X connections/s, gateway Y CPU-ms per connection, client Z ..., steal S%
awk '{ k = $1 " " $4; n[k]++; r[k, n[k]] = $6; g[k, n[k]] = $9; cl[k, n[k]] = $14; st[k, n[k]] = $19 + 0
       if (!(k in seen)) { seen[k] = 1; order[++keys] = k } }
  function median(a, k, m,   i, j, t, v) {
    for (i = 1; i <= m; i++) v[i] = a[k, i] + 0
    for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
  }
  END { for (i = 1; i <= keys; i++) { k = order[i]; split(k, f, " ")
    printf "%-13s %s workers: %7.0f connections/s, gateway %.3f CPU-ms per connection, client %.3f CPU-ms per connection, steal %.0f%%\n",
      f[1], f[2], median(r, k, n[k]), median(g, k, n[k]), median(cl, k, n[k]), median(st, k, n[k]) } }' "$RESULTS"
