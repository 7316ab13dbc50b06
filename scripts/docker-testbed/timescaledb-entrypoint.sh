#!/bin/bash
# Entrypoint of the test bed's stand-in for timescale/timescaledb (scripts/docker-testbed.sh),
# written to the documented contract of the official postgres/timescaledb images, not copied:
#   POSTGRES_PASSWORD (required), POSTGRES_USER (default postgres), POSTGRES_DB (default
#   $POSTGRES_USER); data in $PGDATA (/var/lib/postgresql/data); on an empty data directory
#   only: initdb, timescaledb preloaded and created in POSTGRES_DB, then
#   /docker-entrypoint-initdb.d/* in name order (*.sql through psql as POSTGRES_USER on
#   POSTGRES_DB, stopping at the first error; *.sh run or sourced), with the server on its
#   Unix socket only; then the server on port 5432 of every interface with password auth
#   (scram-sha-256) and trust on the local socket.
set -euo pipefail

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA POSTGRES_USER=${POSTGRES_USER:-postgres}
export POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}

log() { echo "entrypoint: $*"; }

# The official image's first argument may be a flag for postgres; anything else runs as is.
if [ "${1:0:1}" = - ]; then set -- postgres "$@"; fi
[ "$1" = postgres ] || exec "$@"

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chmod 0700 "$PGDATA"
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

psql_init() {
    psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --username "$POSTGRES_USER" "$@"
}

initialize() {
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "entrypoint: POSTGRES_PASSWORD must be set: the database is uninitialized" >&2
        exit 1
    fi
    initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
        --encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    {
        echo "listen_addresses = '*'"
        echo "shared_preload_libraries = 'timescaledb'"
        echo "timescaledb.telemetry_level = off"
    } >>"$PGDATA/postgresql.conf"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"

    # While initializing, the server listens on its socket only: a TCP client (a health
    # check) cannot see a half-made database.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    if [ "$POSTGRES_DB" != postgres ]; then
        psql_init --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    fi
    local db
    for db in template1 "$POSTGRES_DB"; do
        psql_init --dbname "$db" -c 'CREATE EXTENSION IF NOT EXISTS timescaledb;' >/dev/null
    done
    local file
    for file in /docker-entrypoint-initdb.d/*; do
        [ -e "$file" ] || continue
        case "$file" in
            *.sql) log "running $file"; psql_init --dbname "$POSTGRES_DB" -f "$file" ;;
            *.sh)
                log "running $file"
                # shellcheck source=/dev/null
                if [ -x "$file" ]; then "$file"; else . "$file"; fi ;;
            *) log "ignoring $file" ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    log "PostgreSQL init process complete; ready for start up."
}

[ -s "$PGDATA/PG_VERSION" ] || initialize
exec "$@"
