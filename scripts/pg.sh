#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests, from Debian's `postgresql` package, bound to
# 127.0.0.1 on a random free port, trust authentication, no superuser password.
#
#   dir=$(mktemp -d); url=$(scripts/pg.sh start "$dir")   # prints postgres://…/palisade
#   scripts/pg.sh stop "$dir"     # stops the server, keeps the data (start again resumes it)
#   scripts/pg.sh destroy "$dir"  # stops it and removes the directory
#
# As root, the server runs as the `postgres` user (PostgreSQL refuses to run as root); as anyone
# else, as that user. `start` on a directory already initialised restarts it on the same port.
set -euo pipefail

cmd=${1:?usage: pg.sh start|stop|destroy DIR}
dir=${2:?usage: pg.sh start|stop|destroy DIR}

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  echo "pg.sh: PostgreSQL is not installed (apt-get install -y postgresql)" >&2
  exit 2
fi

as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

case "$cmd" in
  start)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      free_port >"$dir/port"
      as_owner "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    port=$(cat "$dir/port")
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=200" start >/dev/null \
      || { cat "$dir/server.log" >&2; exit 1; }
    if ! as_owner "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -Atqc \
        "SELECT 1 FROM pg_database WHERE datname = 'palisade'" postgres | grep -q 1; then
      as_owner "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres palisade
    fi
    echo "postgres://postgres@127.0.0.1:$port/palisade"
    ;;
  stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    fi
    ;;
  destroy)
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null || true
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "usage: pg.sh start|stop|destroy DIR" >&2
    exit 2
    ;;
esac
