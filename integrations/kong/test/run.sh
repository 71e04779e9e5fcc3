#!/usr/bin/env bash
# The Kong plugin's tests:
#   1. busted specs of the handler over a stubbed Kong PDK (spec/);
#   2. the handler inside a real nginx + ngx_lua, through a thin kong.* -> ngx.* shim
#      (test/shim.lua), in front of a real upstream and driving a real Palisade (test/drive.py).
#
#   integrations/kong/test/run.sh                  # builds nothing: PALISADE_BIN or target/release/palisade
#   SKIP_INSTALL=1 integrations/kong/test/run.sh   # packages already installed
#
# Installs its Debian packages when missing. Every server binds 127.0.0.1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
plugin=$(dirname "$here")
root=$(cd "$plugin/../.." && pwd)
palisade=${PALISADE_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/palisade}

say() { printf '\n==> %s\n' "$*"; }

packages=(nginx libnginx-mod-http-lua lua-busted lua-check luajit2 lua-cjson lua-resty-core lua-resty-lrucache openssl python3 curl)
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

say "luacheck"
(cd "$plugin" && luacheck --no-color --quiet .)

say "busted specs (stubbed PDK)"
(cd "$plugin" && busted --lua=luajit --output=plainTerminal spec)

if [ ! -x "$palisade" ]; then
  echo "no Palisade binary at $palisade: build it with 'cargo build --release -p palisade' or set PALISADE_BIN" >&2
  exit 1
fi

say "the handler in nginx + ngx_lua against a real Palisade"
work=$(mktemp -d)
pids=()
cleanup() {
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ "${KEEP_WORK:-0}" = 1 ]; then echo "work dir kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
mkdir -p "$work"/tmp/{body,proxy,fastcgi,uwsgi,scgi}
chmod 711 "$work"  # nginx workers run as another user; they need to reach the temp dirs

read -r p_palisade p_upstream p_front p_front_tls p_untrusted p_gateway p_dead < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(7)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
EOF
)

# A test CA, a certificate it signs for 127.0.0.1, and a self-signed one nobody trusts.
ssl() { openssl "$@" >/dev/null 2>&1; }
ssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/ca.key" -out "$work/ca.crt" -days 2 -subj /CN=palisade-kong-test-ca
ssl req -newkey rsa:2048 -nodes -keyout "$work/front.key" -out "$work/front.csr" -subj /CN=127.0.0.1
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > "$work/ext.cnf"
ssl x509 -req -in "$work/front.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
  -out "$work/front.crt" -days 2 -extfile "$work/ext.cnf"
ssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/untrusted.key" -out "$work/untrusted.crt" -days 2 \
  -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1

key="kong-test-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
cat > "$work/palisade.yaml" <<EOF
listen: 127.0.0.1:$p_palisade
storage: { sqlite_path: '$work/palisade.db' }
collectors:
  - { name: kong, api_key_env: PALISADE_KONG_KEY, policy: default, logging: metadata }
EOF
PALISADE_KONG_KEY=$key "$palisade" serve --config "$work/palisade.yaml" > "$work/palisade.log" 2>&1 &
pids+=($!)

front="http://127.0.0.1:$p_front"
cat > "$work/confs.json" <<EOF
{
  "blocking":       { "service_url": "$front", "api_key": "$key", "mode": "blocking",
                      "metadata": { "app_id": "kong-test" } },
  "async":          { "service_url": "$front", "api_key": "$key", "mode": "async" },
  "blocking-slow":  { "service_url": "$front/slow", "api_key": "$key", "mode": "blocking" },
  "async-slow":     { "service_url": "$front/slow", "api_key": "$key", "mode": "async" },
  "dead-open":      { "service_url": "http://127.0.0.1:$p_dead", "api_key": "$key", "fail_open": true, "timeout_ms": 500 },
  "dead-closed":    { "service_url": "http://127.0.0.1:$p_dead", "api_key": "$key", "fail_open": false, "timeout_ms": 500 },
  "wrong-key":      { "service_url": "$front", "api_key": "not-a-collector-key-000000", "fail_open": false },
  "tls":            { "service_url": "https://127.0.0.1:$p_front_tls", "api_key": "$key" },
  "tls-untrusted":  { "service_url": "https://127.0.0.1:$p_untrusted", "api_key": "$key", "fail_open": false },
  "small":          { "service_url": "$front", "api_key": "$key", "max_body_bytes": 64 }
}
EOF

sed -e "s|@DIR@|$work|g" -e "s|@PLUGIN@|$plugin|g" -e "s|@TEST@|$here|g" \
    -e "s|@PALISADE@|$p_palisade|g" -e "s|@UPSTREAM@|$p_upstream|g" -e "s|@FRONT@|$p_front|g" \
    -e "s|@FRONT_TLS@|$p_front_tls|g" -e "s|@FRONT_UNTRUSTED@|$p_untrusted|g" -e "s|@GATEWAY@|$p_gateway|g" \
    "$here/nginx.conf.in" > "$work/nginx.conf"
PALISADE_SHIM_CONFS="$work/confs.json" nginx -p "$work" -c "$work/nginx.conf" -g 'daemon on;'

for i in $(seq 100); do
  curl -fsS "http://127.0.0.1:$p_palisade/health/ready" >/dev/null 2>&1 && break
  [ "$i" = 100 ] && { echo "Palisade did not start:" >&2; cat "$work/palisade.log" >&2; exit 1; }
  sleep 0.1
done

GATEWAY="http://127.0.0.1:$p_gateway" UPSTREAM="http://127.0.0.1:$p_upstream" FRONT="$front" \
  ERROR_LOG="$work/error.log" API_KEY="$key" python3 "$here/drive.py"
