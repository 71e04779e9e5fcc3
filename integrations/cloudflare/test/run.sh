#!/usr/bin/env bash
# The Cloudflare Workers module's tests: the example Worker compiled from TypeScript, run in
# workerd through npm miniflare (pinned in package-lock.json), against a real Palisade, in
# blocking and async modes. Everything binds 127.0.0.1.
#
#   integrations/cloudflare/test/run.sh     # PALISADE_BIN, or target/release/palisade
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
module=$(dirname "$here")
root=$(cd "$module/../.." && pwd)
palisade=${PALISADE_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/palisade}

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -x "$palisade" ]; then
  echo "no Palisade binary at $palisade: build it with 'cargo build --release -p palisade' or set PALISADE_BIN" >&2
  exit 1
fi

cd "$module"
npm ci --no-audit --no-fund --loglevel=error
# Type-check and compile the module; bundle the example Worker as `wrangler deploy` would, which
# also validates wrangler.jsonc (no account is contacted with --dry-run). The tests run that bundle.
npx --no-install tsc -p tsconfig.json
WRANGLER_SEND_METRICS=false npx --no-install wrangler deploy --dry-run --outdir dist/bundle

work=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
key="worker-test-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
cat > "$work/palisade.yaml" <<YAML
listen: 127.0.0.1:$port
storage: { sqlite_path: '$work/palisade.db' }
collectors:
  - { name: cloudflare, api_key_env: PALISADE_CLOUDFLARE_KEY, policy: default, logging: metadata }
YAML
PALISADE_CLOUDFLARE_KEY=$key "$palisade" serve --config "$work/palisade.yaml" > "$work/palisade.log" 2>&1 &
pid=$!
for i in $(seq 100); do
  curl -fsS "http://127.0.0.1:$port/health/ready" >/dev/null 2>&1 && break
  [ "$i" = 100 ] && { echo "Palisade did not start:" >&2; cat "$work/palisade.log" >&2; exit 1; }
  sleep 0.1
done

PALISADE_URL="http://127.0.0.1:$port" PALISADE_KEY="$key" node --test test/
