#!/bin/sh
# A throwaway PostgreSQL cluster to try bookshelf with, from Debian's `postgresql` package.
#   sh scripts/scratch-db.sh start DIR   creates DIR/pgdata, starts the server in the background and
#                                        prints the database URL (also written to DIR/url)
#   sh scripts/scratch-db.sh stop DIR    stops that server (fast shutdown); remove DIR yourself after
# The cluster listens only on 127.0.0.1 at a free port (no Unix socket), trusts every connection to it
# (role and database "bookshelf") and runs with fsync off: a scratch cluster, never a production one.
# PostgreSQL refuses to run as root; as root its commands run as Debian's `postgres` user, which then
# owns DIR and must be able to enter it (the directories above DIR get search permission for others).
set -eu

[ $# -eq 2 ] || { echo "usage: sh scripts/scratch-db.sh start|stop DIR" >&2; exit 2; }
action=$1
dir=$2
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n | tail -n 1)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    echo "scratch-db: no PostgreSQL server under /usr/lib/postgresql (apt-get install postgresql)" >&2
    exit 1
fi

as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        (cd / && setpriv --reuid="$(id -u postgres)" --regid="$(id -g postgres)" --init-groups -- "$@")
    else
        "$@"
    fi
}

case $action in
start)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$dir"
        up=$dir
        while [ "$up" != / ]; do up=$(dirname "$up"); chmod o+x "$up"; done
    fi
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    if ! as_owner "$bindir/initdb" -D "$dir/pgdata" -U bookshelf -A trust -E UTF8 --locale C --no-sync \
        >"$dir/initdb.log" 2>&1; then
        echo "scratch-db: initdb failed:" >&2
        tail -n 5 "$dir/initdb.log" >&2
        exit 1
    fi
    if ! as_owner "$bindir/pg_ctl" -D "$dir/pgdata" -l "$dir/postgres.log" -w -t 30 \
        -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off" start >/dev/null; then
        echo "scratch-db: the server did not start within 30 s:" >&2
        tail -n 5 "$dir/postgres.log" >&2
        exit 1
    fi
    "$bindir/createdb" -h 127.0.0.1 -p "$port" -U bookshelf bookshelf
    echo "postgresql://bookshelf@127.0.0.1:$port/bookshelf" >"$dir/url"
    cat "$dir/url"
    ;;
stop)
    dir=$(cd "$dir" && pwd)
    as_owner "$bindir/pg_ctl" -D "$dir/pgdata" -m fast -w -t 30 stop >/dev/null
    ;;
*)
    echo "usage: sh scripts/scratch-db.sh start|stop DIR" >&2
    exit 2
    ;;
esac
