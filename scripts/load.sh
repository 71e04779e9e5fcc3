#!/usr/bin/env bash
# Proxy overhead, measured in one run on one machine, all on 127.0.0.1:
#
#   direct     wrk → upstream (nginx serving canned answers)
#   nginx      wrk → nginx as a plain reverse proxy → upstream
#   palisade0  wrk → Palisade with no detectors → upstream
#   palisade   wrk → Palisade with the default policy → upstream
#
# for a 2 KiB MCP tools/call, a chat completion and a streamed one, at concurrency 1, at concurrency 64,
# and paced at about 1 000 requests/s (4 connections, one request every 4 ms each). Prints a
# Markdown table: p50 / p99 latency, added latency against direct, requests/s, and Palisade's
# peak RSS. Needs wrk and nginx (Debian packages; installed here if missing).
#
# Then the guard API (POST /v1/guard/request with a 2 KiB MCP tools/call, default policy) at
# concurrency 1 and 64.
#
#   ./scripts/load.sh            # 5 s a run
#   DURATION=10 ./scripts/load.sh
#   ONLY=guard ./scripts/load.sh # the guard API alone
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
dur=${DURATION:-5}

if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk nginx >/dev/null
fi
[ -x target/release/palisade ] || cargo build --release -p palisade

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for f in nginx proxy; do
    [ -f "$work/$f.pid" ] && kill "$(cat "$work/$f.pid")" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(port); NGX=$(port); P0=$(port); P1=$(port)

mcp_body=$(cat scripts/load/mcp_result.json)
sse_body=$(cat scripts/load/chat_stream.sse)
chat_body=$(cat scripts/load/chat_result.json)
mkdir -p "$work/logs"
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
pid $work/nginx.pid;
error_log $work/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/body;
  proxy_temp_path $work/proxy;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$UP;
    client_body_buffer_size 64k;
    location = /mcp { default_type application/json; return 200 '$mcp_body'; }
    location = /v1/chat/completions { default_type text/event-stream; return 200 '$sse_body'; }
    location = /v1/json/chat/completions { default_type application/json; return 200 '$chat_body'; }
  }
}
NGINX
# The reverse proxy is its own nginx process, as in a real deployment: served by the origin's
# process, it would hand requests to the origin without a context switch, a shortcut Palisade,
# a separate process, cannot take.
cat > "$work/proxy.conf" <<NGINX
worker_processes 1;
pid $work/proxy.pid;
error_log $work/logs/proxy-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/proxy-body;
  proxy_temp_path $work/proxy;
  keepalive_requests 1000000;
  upstream origin { server 127.0.0.1:$UP; keepalive 128; }
  server {
    listen 127.0.0.1:$NGX;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
NGINX
nginx -p "$work" -c "$work/nginx.conf" -e "$work/logs/error.log"
nginx -p "$work" -c "$work/proxy.conf" -e "$work/logs/proxy-error.log"

routes="routes:
  - { name: mcp, path_prefix: /mcp, upstream: 'http://127.0.0.1:$UP/mcp', protocol: mcp }
  - { name: chat, path_prefix: /v1, upstream: 'http://127.0.0.1:$UP/v1', protocol: openai }"
printf 'listen: 127.0.0.1:%s\n%s\nstorage: { sqlite_path: %s/p0.db }\npolicies:\n  default: { input: [], output: [] }\n' "$P0" "$routes" "$work" > "$work/none.yaml"
# The built-in default policy, every detector and tool check included, minus its rate limit
# (100 calls per 300 s per client and tool), which a load test from one address would trip.
printf 'listen: 127.0.0.1:%s\n%s\nstorage: { sqlite_path: %s/p1.db }\ncollectors:\n  - { name: load, api_key_env: GUARD_KEY }\n' "$P1" "$routes" "$work" > "$work/default.yaml"
target/release/palisade config default | sed -e '/^ *rate_limits:/,+1d' -e '/100 calls per 300 seconds/d' >> "$work/default.yaml"
export GUARD_KEY="load-test-key-$(date +%s%N)"
PALISADE_LOG=warn target/release/palisade serve --config "$work/none.yaml" 2>"$work/p0.log" & pids+=($!); pid0=$!
PALISADE_LOG=warn target/release/palisade serve --config "$work/default.yaml" 2>"$work/p1.log" & pids+=($!); pid1=$!
for p in $UP $NGX $P0 $P1; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.05; done
done

# Sanity: every path answers 200 before measuring.
for p in $UP $NGX $P0 $P1; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' \
    -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{}}}' "http://127.0.0.1:$p/mcp")
  [ "$code" = 200 ] || { echo "port $p answered $code" >&2; exit 1; }
done

to_ms() { # wrk prints 123.45us, 1.23ms or 1.02s
  awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/,"",v); print v/1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v); print v+0 } else if (v ~ /s$/) { sub(/s$/,"",v); print v*1000 } else print v }'
}

run() { # target-port script connections threads pace_ms → "p50 p99 rps"
  local out
  out=$(PACE_MS=$5 wrk -t"$4" -c"$3" -d"${dur}s" --latency -s "scripts/load/$2" "http://127.0.0.1:$1$6" 2>&1)
  local p50 p99 rps
  p50=$(echo "$out" | awk '$1=="50%"{print $2}')
  p99=$(echo "$out" | awk '$1=="99%"{print $2}')
  rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  if echo "$out" | grep -q 'Non-2xx'; then
    echo "port $1 $6: $(echo "$out" | grep 'Non-2xx')" >&2
    exit 1
  fi
  echo "$(to_ms "$p50") $(to_ms "$p99") $rps"
}

report="$root/target/load-report.md"
{
  echo "| scenario | load | target | p50 ms | p99 ms | added p50 ms | added p99 ms | req/s | req/s vs nginx |"
  echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
} > "$report"

# ONLY=guard runs the guard API part alone.
scenarios=("mcp tools/call 2 KiB|mcp_call.lua|/mcp" "chat completion|chat_json.lua|/v1/json/chat/completions" "streamed chat completion|chat_stream.lua|/v1/chat/completions")
[ "${ONLY:-}" = guard ] && scenarios=()
for scenario in "${scenarios[@]}"; do
  IFS='|' read -r name script path <<<"$scenario"
  for load in "c=1|1|1|0" "c=64|64|2|0" "~1000 req/s|4|1|4"; do
    IFS='|' read -r lname conns threads pace <<<"$load"
    declare -A res=()
    for t in direct:$UP nginx:$NGX palisade0:$P0 palisade:$P1; do
      res[${t%%:*}]=$(run "${t#*:}" "$script" "$conns" "$threads" "$pace" "$path")
    done
    read -r d50 d99 drps <<<"${res[direct]}"
    read -r _ _ nrps <<<"${res[nginx]}"
    for t in direct nginx palisade0 palisade; do
      read -r a50 a99 arps <<<"${res[$t]}"
      awk -v n="$name" -v l="$lname" -v t="$t" -v a50="$a50" -v a99="$a99" -v d50="$d50" -v d99="$d99" -v r="$arps" -v nr="$nrps" \
        'BEGIN { printf "| %s | %s | %s | %.3f | %.3f | %+.3f | %+.3f | %.0f | %.0f %% |\n", n, l, t, a50, a99, a50-d50, a99-d99, r, 100*r/nr }' >> "$report"
    done
    unset res
  done
done

# The guard API, as a gateway plugin calls it: a 2 KiB MCP tools/call judged under the default
# policy (the answer must be an allow verdict, or the numbers mean nothing).
verdict=$(curl -s -X POST -H "Authorization: Bearer $GUARD_KEY" -H 'content-type: application/json' \
  -d '{"protocol":"mcp","body":"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"x\",\"arguments\":{\"text\":\"Summarise the quarterly numbers.\"}}}"}' \
  "http://127.0.0.1:$P1/v1/guard/request")
echo "$verdict" | grep -q '"allowed":true' || { echo "guard API answered: $verdict" >&2; exit 1; }
{
  echo
  echo "| guard API | load | p50 ms | p99 ms | req/s |"
  echo "| --- | --- | ---: | ---: | ---: |"
} >> "$report"
for load in "c=1|1|1" "c=64|64|2"; do
  IFS='|' read -r lname conns threads <<<"$load"
  read -r g50 g99 grps <<<"$(run "$P1" guard_request.lua "$conns" "$threads" 0 /v1/guard/request)"
  awk -v l="$lname" -v a="$g50" -v b="$g99" -v r="$grps" \
    'BEGIN { printf "| POST /v1/guard/request, 2 KiB MCP tools/call | %s | %.3f | %.3f | %.0f |\n", l, a, b, r }' >> "$report"
done

rss() { awk '/VmHWM/{printf "%.1f", $2/1024}' "/proc/$1/status"; }
{
  echo
  echo "Peak RSS: Palisade with no detectors $(rss "$pid0") MiB; with the default policy $(rss "$pid1") MiB."
  echo "Machine: $(nproc) cores; wrk, nginx and Palisade share them. ${dur} s a run."
} >> "$report"
cat "$report"
