#!/usr/bin/env bash
# Runs a command with a throwaway Redis: starts Debian's redis-server on 127.0.0.1 at a free
# port (no persistence), exports PALISADE_TEST_REDIS_URL, runs the command, stops Redis.
#
#   ./scripts/redis.sh cargo test -p palisade-redis
#
# Installs redis-server when it is missing (unless SKIP_INSTALL=1). The tests that read
# PALISADE_TEST_REDIS_URL skip without it, except under CI=true, where they fail.
set -euo pipefail

if ! command -v redis-server >/dev/null && [ "${SKIP_INSTALL:-0}" != 1 ]; then
  apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
fi
command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  --dir "$dir" >"$dir/redis.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 200); do
  redis-cli -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.05
done
redis-cli -p "$port" ping >/dev/null || { cat "$dir/redis.log" >&2; exit 1; }

export PALISADE_TEST_REDIS_URL="redis://127.0.0.1:$port/"
"$@"
