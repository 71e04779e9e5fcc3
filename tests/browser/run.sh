#!/usr/bin/env bash
# The dashboard's browser tests: Debian's chromium driven by playwright-core, against a real Palisade.
#   PALISADE_BIN=target/release/palisade ./tests/browser/run.sh
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [ "${SKIP_INSTALL:-0}" != 1 ]; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  fi
fi
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  echo "chromium is not installed: browser tests not run" >&2
  if [ "${CI:-}" = true ]; then exit 1; fi
  exit 0
fi
if ! command -v npm >/dev/null; then
  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
# No browser download: Debian's chromium is used through executablePath.
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --silent --no-audit --no-fund
node dashboard.test.mjs
