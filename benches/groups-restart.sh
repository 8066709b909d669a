#!/usr/bin/env bash
# What a gateway restart costs a consumer group on the Iggy backend: a confluent-kafka group
# of two consumers reads 8,000 records at a steady pace, committing every 20, while the
# gateway is killed (SIGKILL) and started again on the same address and stream
# (tests/clients/groups_restart.py). Prints, per run and group protocol, the records read
# again after the restart, what was uncommitted at the kill, and the rebalance callbacks
# the consumers saw after it.
#
#   IGGY_SERVER=127.0.0.1:8090 benches/groups-restart.sh [GATEWAY_BINARY] [RUNS]
#
# GATEWAY_BINARY defaults to this tree's debug build (built here); give another build's
# binary to compare. The server must run already, with the root user iggy/iggy; the venv of
# scripts/install-test-deps.sh must be there.
set -euo pipefail
cd "$(dirname "$0")/.."
SERVER="${IGGY_SERVER:-127.0.0.1:8090}"
GATEWAY="${1:-}"
RUNS="${2:-3}"
if [ -z "$GATEWAY" ]; then
  cargo build -q
  GATEWAY=target/debug/iggy-kafka-gateway
fi
PYTHON="$PWD/target/test-deps/venv/bin/python"

start_gateway() { # stream address log
  "$GATEWAY" --iggy "iggy://iggy:iggy@$SERVER" --stream "$1" --listen "$2" \
    --admin-listen off --group-initial-rebalance-delay-ms 1000 \
    --group-consumer-heartbeat-interval-ms 1000 --log info >>"$3" 2>&1 &
  echo $!
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/${2%:*}/${2#*:}") 2>/dev/null; then return; fi
    sleep 0.1
  done
  echo "the gateway did not start: $3" >&2
  exit 1
}

for run in $(seq "$RUNS"); do
  for protocol in classic consumer; do
    stream="bench-groups-restart-$$-$run-$protocol"
    port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    address="127.0.0.1:$port"
    log=$(mktemp)
    pid=$(start_gateway "$stream" "$address" "$log")
    coproc SCRIPT { cd tests/clients && exec "$PYTHON" groups_restart.py "$address" \
      "groups-restart-$protocol" "groups-restart-$protocol" "$protocol" 2>/dev/null; }
    read -r word <&"${SCRIPT[0]}"
    [ "$word" = KILL ] || { echo "unexpected: $word" >&2; exit 1; }
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null || true
    pid=$(start_gateway "$stream" "$address" "$log")
    echo restarted >&"${SCRIPT[1]}"
    read -r result <&"${SCRIPT[0]}"
    wait "$SCRIPT_PID" || true
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    echo "run $run $protocol: $("$PYTHON" -c 'import json, sys
r = json.loads(sys.argv[1])
print("read again after the restart %d, uncommitted at the kill %d, rebalance callbacks after it %d, member ids kept %s" % (r["redelivered_after_restart"], r["uncommitted_at_kill"], r["rebalances_after_restart"], r["member_ids_kept"]))' "$result")"
    rm -f "$log"
  done
done
