#!/usr/bin/env bash
# A throwaway PostgreSQL for the tests: Debian's server, run as an unprivileged user from a
# temporary directory, listening on 127.0.0.1 only.
#   .ci/postgres.sh start DIR   installs the server when missing, starts it, prints DATABASE_URL
#   .ci/postgres.sh stop DIR    stops it and removes DIR
set -euo pipefail
action="$1"
dir="$2"
port="${PGPORT_FOR_TESTS:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"

find_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
}

as_user() {
  # The server refuses to run as root.
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u nobody -- "$@"
  else
    "$@"
  fi
}

case "$action" in
  start)
    if [ -z "$(find_bin)" ]; then
      SUDO=""
      if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
    fi
    bin="$(find_bin)"
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then chown nobody "$dir"; fi
    as_user "$bin/initdb" -D "$dir/data" -U mcp --auth=trust -E UTF8 >/dev/null
    as_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
      -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c max_connections=200 -c fsync=off" \
      start >/dev/null
    as_user "$bin/createdb" -h 127.0.0.1 -p "$port" -U mcp mcp_oauth_test
    echo "postgres://mcp@127.0.0.1:$port/mcp_oauth_test"
    ;;
  stop)
    bin="$(find_bin)"
    if [ -n "$bin" ] && [ -d "$dir/data" ]; then
      as_user "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    fi
    rm -rf "$dir"
    ;;
  *)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
