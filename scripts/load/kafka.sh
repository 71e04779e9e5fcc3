#!/usr/bin/env bash
# What publishing to Kafka costs the proxy, and how fast events reach the broker, in one run on one
# machine, all on 127.0.0.1: wrk drives 2 KiB MCP tools/calls (64 connections) through Palisade
# to nginx, once with recording to SQLite only and once with Kafka publishing as well (a tansu
# broker, in-memory storage, a 3-partition topic). Prints a Markdown table: requests/s, p50 and p99
# latency, events published per second, and whether every event reached the broker.
#
#   TANSU_BIN=/path/to/tansu ./scripts/load/kafka.sh     # DURATION=10 for longer runs
set -euo pipefail
cd "$(dirname "$0")/../.."
dur=${DURATION:-5}
bin=${PALISADE_BIN:-target/release/palisade}
tansu=${TANSU_BIN:-target/tools/tansu/bin/tansu}
[ -x "$tansu" ] || { echo "no tansu at $tansu (scripts/test.sh builds it; or set TANSU_BIN)" >&2; exit 1; }
[ -x "$bin" ] || cargo build --release -p palisade

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.05; done; exit 1; }
UP=$(port); K=$(port)

mkdir -p "$work/logs"
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
pid $work/nginx.pid;
error_log $work/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/body;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$UP;
    client_body_buffer_size 64k;
    location = /mcp { default_type application/json; return 200 '$(cat scripts/load/mcp_result.json)'; }
  }
}
NGINX
nginx -p "$work" -c "$work/nginx.conf" -e "$work/logs/error.log"
"$tansu" broker --listener-url "tcp://127.0.0.1:$K" --advertised-listener-url "tcp://127.0.0.1:$K" \
  --storage-engine memory://tansu/ >"$work/tansu.log" 2>&1 & pids+=($!)
wait_port "$UP"; wait_port "$K"
"$tansu" topic create --broker "tcp://127.0.0.1:$K" --partitions 3 palisade.events >/dev/null

metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1==m {print $2+0; f=1} END {if (!f) print 0}'; }

echo "| recording | req/s | p50 ms | p99 ms | events published/s | published / requests | dropped |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for mode in sqlite kafka; do
  P=$(port); A=$(port)
  {
    echo "listen: 127.0.0.1:$P"
    echo "storage: { sqlite_path: '$work/$mode.db' }"
    echo "admin: { listen: 127.0.0.1:$A }"
    echo "routes: [{ name: mcp, path_prefix: /mcp, upstream: 'http://127.0.0.1:$UP/mcp', protocol: mcp }]"
    echo "policies: { default: { rate_limits: [] } }"
    [ "$mode" = kafka ] && echo "events: { kafka: { brokers: ['127.0.0.1:$K'] } }"
  } > "$work/$mode.yaml"
  PALISADE_LOG=warn "$bin" serve --config "$work/$mode.yaml" 2>"$work/$mode.log" & pids+=($!)
  wait_port "$P"; wait_port "$A"
  out=$(wrk -t2 -c64 -d"${dur}s" --latency -s scripts/load/mcp_call.lua "http://127.0.0.1:$P/mcp")
  if echo "$out" | grep -q Non-2xx; then echo "$out" >&2; exit 1; fi
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  if [ "$mode" = kafka ]; then
    # Let the last batches land, then read what the broker acknowledged.
    t0=$(date +%s.%N)
    for i in $(seq 100); do
      [ -n "${TRACE:-}" ] && echo "t+$i: $(metric "$A" 'palisade_kafka_published_total{topic="palisade.events"}') buffered $(metric "$A" palisade_kafka_buffered_events)" >&2
      [ "$(metric "$A" 'palisade_kafka_published_total{topic="palisade.events"}')" -ge "$reqs" ] && break
      sleep 0.1
    done
    pub=$(metric "$A" 'palisade_kafka_published_total{topic="palisade.events"}')
    drop=$(metric "$A" 'palisade_kafka_dropped_total{reason="buffer_full"}')
    awk -v r="$rps" -v a="$p50" -v b="$p99" -v pub="$pub" -v reqs="$reqs" -v d="$dur" -v drop="$drop" -v t0="$t0" -v t1="$(date +%s.%N)" \
      'BEGIN { printf "| sqlite + kafka | %.0f | %s | %s | %.0f | %d / %d | %d |\n", r, a, b, pub/(d+t1-t0), pub, reqs, drop }'
  else
    echo "| sqlite | ${rps%.*} | $p50 | $p99 | – | – | – |"
  fi
  kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
done
