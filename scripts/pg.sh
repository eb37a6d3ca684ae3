#!/usr/bin/env bash
#  pg.sh: a private PostgreSQL cluster in a local folder, for development,
#  tests and the native run command. Uses Debian's initdb and pg_ctl (the
#  newest /usr/lib/postgresql/*/bin, or PG_BINDIR). The server listens on
#  127.0.0.1 only and on a unix socket inside the folder, trusts local
#  connections (user "postgres", no password), keeps fsync on, and has a
#  database "switchboard".
#
#    scripts/pg.sh start DIR PORT   create the cluster if needed, start it (ok if running)
#    scripts/pg.sh stop DIR         stop it (ok if not running or not there)
#    scripts/pg.sh status DIR       exit 0 when running
#    scripts/pg.sh url DIR [PORT]   print the libpq URL
#
#  PostgreSQL refuses to run as root: as root the folder is owned by the
#  "postgres" user and the tools run through runuser; the folder's parents
#  must be searchable by that user.
set -eu

usage () {
    echo "usage: $0 start DIR PORT | stop DIR | status DIR | url DIR [PORT]" >&2
    exit 2
}

die () {
    echo "pg.sh: $*" >&2
    exit 1
}

[ $# -ge 2 ] || usage
cmd=$1
dir=$2
port=${3:-}

case "$dir" in
    /*) ;;
    *) dir="$PWD/$dir" ;;
esac
dir=${dir%/}

#  The port the cluster was last started with, when none is given.
if [ -z "$port" ] && [ -r "$dir/switchboard.conf" ]; then
    port=$(sed -n 's/^port = \([0-9]*\)$/\1/p' "$dir/switchboard.conf" 2>/dev/null || true)
fi

url () {
    echo "postgresql://postgres@127.0.0.1:$port/switchboard"
}

if [ "$cmd" = url ]; then
    [ -n "$port" ] || die "url: no PORT given and none recorded in $dir"
    url
    exit 0
fi

#  Newest installed server version.
bindir=${PG_BINDIR:-}
if [ -z "$bindir" ]; then
    bindir=$(for d in /usr/lib/postgresql/*/bin; do
                 if [ -x "$d/initdb" ]; then echo "$d"; fi
             done | sort -V | tail -n 1)
fi
if [ -z "$bindir" ] && command -v pg_config >/dev/null 2>&1; then
    bindir=$(pg_config --bindir)
fi
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ] || [ ! -x "$bindir/pg_ctl" ]; then
    die "initdb/pg_ctl not found (install Debian's postgresql package, or set PG_BINDIR)"
fi

#  Run a PostgreSQL tool as the cluster's owner.
if [ "$(id -u)" -eq 0 ]; then
    getent passwd postgres >/dev/null || die "running as root needs a 'postgres' user"
    as_pg () { (cd / && runuser -u postgres -- "$@"); }
else
    as_pg () { "$@"; }
fi

#  As root, the postgres user must reach DIR. A checkout under /root (mode
#  700) is out of its reach: the cluster then lives under /var/tmp and DIR
#  becomes a symbolic link to it.
if [ "$(id -u)" -eq 0 ] && [ "$cmd" = start ] && [ ! -L "$dir" ] && [ ! -f "$dir/PG_VERSION" ]; then
    parent=$(dirname "$dir")
    mkdir -p "$parent"
    if ! as_pg test -x "$parent"; then
        real="/var/tmp/switchboard-pg/$(printf '%s' "$dir" | sha1sum | cut -c1-16)"
        mkdir -p "$real"
        chmod 755 /var/tmp/switchboard-pg
        if [ -d "$dir" ]; then
            rmdir "$dir" 2>/dev/null || die "start: $dir exists and the postgres user cannot reach it"
        fi
        ln -s "$real" "$dir"
        echo "pg.sh: the postgres user cannot reach $parent; the cluster lives in $real" >&2
    fi
fi
if [ -L "$dir" ]; then
    dir=$(readlink -f "$dir")
fi

#  The postmaster's pid when it is alive (not a zombie that nobody reaped,
#  as happens in containers without an init), else nothing.
live_pid () {
    local pid state
    pid=$(head -n 1 "$dir/postmaster.pid" 2>/dev/null) || return 0
    case "$pid" in ''|*[!0-9]*) return 0 ;; esac
    state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d ' ' -f 1)
    if [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]; then
        echo "$pid"
    fi
}

running () {
    [ -f "$dir/PG_VERSION" ] && [ -n "$(live_pid)" ] &&
        as_pg "$bindir/pg_ctl" status -D "$dir" >/dev/null 2>&1
}

case "$cmd" in
start)
    case "$port" in
        ''|*[!0-9]*) die "start: PORT must be a number" ;;
    esac
    [ -n "${3:-}" ] || die "start: PORT is required"
    sock="$dir/.s.PGSQL.$port"
    [ ${#sock} -lt 108 ] || die "start: socket path too long (${#sock} bytes): $sock"

    if [ ! -f "$dir/PG_VERSION" ]; then
        mkdir -p "$dir"
        [ -z "$(ls -A "$dir")" ] || die "start: $dir exists, is not empty and is not a cluster"
        if [ "$(id -u)" -eq 0 ]; then
            chown postgres:postgres "$dir"
        fi
        chmod 700 "$dir"
        as_pg test -w "$dir" ||
            die "start: the postgres user cannot write $dir (are its parents searchable?)"
        log=$(mktemp)
        as_pg "$bindir/initdb" -D "$dir" -U postgres -A trust -E UTF8 --locale=C \
            >"$log" 2>&1 || { cat "$log" >&2; rm -f "$log"; die "initdb failed"; }
        rm -f "$log"
        echo "include_if_exists = 'switchboard.conf'" >>"$dir/postgresql.conf"
    fi

    if running; then
        running_port=$(sed -n 's/^port = \([0-9]*\)$/\1/p' "$dir/switchboard.conf" 2>/dev/null || true)
        if [ -n "$running_port" ] && [ "$running_port" != "$port" ]; then
            die "start: already running in $dir on port $running_port, not $port"
        fi
        echo "pg.sh: already running in $dir" >&2
    else
        #  Settings that follow the arguments, rewritten at every start.
        qdir=$(printf '%s' "$dir" | sed "s/'/''/g")
        {
            echo "# written by scripts/pg.sh at each start"
            echo "port = $port"
            echo "listen_addresses = '127.0.0.1'"
            echo "unix_socket_directories = '$qdir'"
            echo "fsync = on"
        } >"$dir/switchboard.conf"
        if [ "$(id -u)" -eq 0 ]; then
            chown postgres:postgres "$dir/switchboard.conf"
        fi
        #  Lock files left by a postmaster that died (kill -9) and was never
        #  reaped: its zombie's pid would look alive to the new one.
        if [ -z "$(live_pid)" ]; then
            rm -f "$dir/postmaster.pid" "$dir"/.s.PGSQL.*.lock
        fi
        as_pg "$bindir/pg_ctl" start -D "$dir" -l "$dir/server.log" -w -t 60 >/dev/null || {
            tail -n 20 "$dir/server.log" >&2 || true
            die "pg_ctl start failed"
        }
    fi

    exists=$(as_pg "$bindir/psql" -h "$dir" -p "$port" -U postgres -d postgres -Atqc \
        "SELECT 1 FROM pg_database WHERE datname = 'switchboard'") ||
        die "cannot connect to the cluster in $dir on port $port"
    if [ "$exists" != 1 ]; then
        as_pg "$bindir/createdb" -h "$dir" -p "$port" -U postgres switchboard ||
            die "createdb switchboard failed"
    fi
    ;;
stop)
    if running; then
        as_pg "$bindir/pg_ctl" stop -D "$dir" -m fast -w -t 60 >/dev/null || die "pg_ctl stop failed"
    fi
    ;;
status)
    running
    ;;
*)
    usage
    ;;
esac
