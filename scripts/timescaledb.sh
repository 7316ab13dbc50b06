#!/usr/bin/env bash
# A throwaway PostgreSQL + TimescaleDB for tests and benchmarks on a Debian 12 or 13 host,
# without Docker. It installs what is missing, runs the server as the `postgres` OS user,
# listens on 127.0.0.1 only, trusts every local connection and keeps no data worth keeping.
#
#   scripts/timescaledb.sh [options] start|stop|status|destroy
#
#   --data-dir DIR   cluster directory          (env TSDB_DATA_DIR, default <repo>/.tsdb)
#   --port N         TCP port                   (env TSDB_PORT,     default 55432)
#   --db-name NAME   database `start` creates   (env TSDB_DB_NAME,  default wearables)
#   --wipe           with `start`: destroy the cluster first
#   --edition E      apache or community     (env TSDB_EDITION,  default apache)
#
# Editions. `apache` is the Apache-2 part TimescaleDB that Debian ships. `community` is the
# Timescale License edition of the official Docker image (compression, policies), built
# from the unmodified upstream source tarball found at TSDB_COMMUNITY_SOURCE (a
# timescaledb-X.Y.Z.tar.gz, or a directory holding one; default
# <repo>/../shared/timescaledb-src), installed into a private copy of PostgreSQL under the
# cache (never over the system's extension files) and started with
# timescaledb.license = 'timescale'. Its defaults: port 55433, data <repo>/.tsdb-community.
# `available` exits 0 if the edition can be started here, else 3 with one line saying why.
#
#   scripts/timescaledb.sh [options] available
#
# `start` and `status` print the connection settings on stdout as shell-sourceable lines
# (DB_HOST=…, DB_PORT=…, DB_NAME=…, DB_USER=…); everything else goes to stderr, so
#   eval "$(scripts/timescaledb.sh start)"
# works. Builds are cached in TSDB_CACHE_DIR (default /var/cache/wearables-tsdb) so that a
# fresh clone on the same machine does not rebuild TimescaleDB.
set -euo pipefail
# Without this, a failure inside $(...) would not stop the function that runs it.
shopt -s inherit_errexit

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EDITION=${TSDB_EDITION:-apache}
DEFAULT_DATA_DIR="$REPO_ROOT/.tsdb"
DEFAULT_PORT=55432
DATA_DIR=${TSDB_DATA_DIR:-}
PORT=${TSDB_PORT:-}
COMMUNITY_SOURCE=${TSDB_COMMUNITY_SOURCE:-$REPO_ROOT/../shared/timescaledb-src}
DB_NAME=${TSDB_DB_NAME:-wearables}
CACHE_DIR=${TSDB_CACHE_DIR:-/var/cache/wearables-tsdb}
DB_USER=postgres
HOST=127.0.0.1
WIPE=0

log() { printf 'timescaledb.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}" >&2
    exit 2
}

# --- host facts --------------------------------------------------------------------------

# shellcheck source=/dev/null
read -r OS_ID OS_VERSION OS_CODENAME < <(
    . /etc/os-release && echo "${ID:-unknown} ${VERSION_ID:-0} ${VERSION_CODENAME:-unknown}"
)
[[ $OS_ID == debian ]] || die "only Debian 12 and 13 are supported (this is $OS_ID)"

# Each Debian release has one PostgreSQL major; TimescaleDB has to match it.
DEBIAN_MAJOR=${OS_VERSION%%.*}
case $DEBIAN_MAJOR in
    12) PG_MAJOR=15 ;;
    13) PG_MAJOR=17 ;;
    *) die "Debian $DEBIAN_MAJOR is not supported (12 or 13 are)" ;;
esac
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_LIBDIR=/usr/lib/postgresql/$PG_MAJOR/lib
PG_SHAREDIR=/usr/share/postgresql/$PG_MAJOR

# --- installation ------------------------------------------------------------------------

require_root() {
    [[ $EUID -eq 0 ]] || die "$1 is missing and installing it needs root"
}

is_installed() {
    [[ $(dpkg-query -W -f '${db:Status-Status}' "$1" 2>/dev/null) == installed ]]
}

APT_UPDATED=0
apt_install() {
    local missing=() pkg
    for pkg in "$@"; do
        is_installed "$pkg" || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    require_root "${missing[*]}"
    # A fresh machine may have no or stale package lists; refresh them once per run.
    if ((!APT_UPDATED)); then
        apt-get update -qq >&2
        APT_UPDATED=1
    fi
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >&2
}

install_server() {
    require_root "postgresql-$PG_MAJOR"
    # Installing postgresql-NN would otherwise create and start a `main` cluster on 5432
    # that nobody asked for; the setting has to exist before the server package arrives.
    apt_install postgresql-common
    local conf=/etc/postgresql-common/createcluster.conf
    if grep -Eq '^[[:space:]]*create_main_cluster[[:space:]]*=' "$conf"; then
        sed -i -E 's/^[[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' "$conf"
    else
        echo 'create_main_cluster = false' >>"$conf"
    fi
    apt_install "postgresql-$PG_MAJOR"
}

timescaledb_installed() {
    [[ -f $PG_SHAREDIR/extension/timescaledb.control ]] &&
        compgen -G "$PG_LIBDIR/timescaledb*.so" >/dev/null
}

# The host's own Debian mirrors, so the private trixie sources use the same hosts.
host_mirror() {
    local suite=$1
    # shellcheck disable=SC2016 # $(…) is apt's own field syntax, not the shell's
    apt-get indextargets --no-release-info --format '$(RELEASE) $(REPO_URI)' 2>/dev/null |
        awk -v s="$suite" '$1 == s && !found { print $2; found = 1 }'
}

# Debian 12 has no TimescaleDB package: build Debian 13's source against the installed
# PostgreSQL 15. Apache-only, like Debian's own package.
build_timescaledb() {
    require_root timescaledb
    apt_install gcc make cmake libssl-dev dpkg-dev xz-utils

    local pg_version build_root build
    pg_version=$(dpkg-query -W -f '${Version}' "postgresql-$PG_MAJOR")
    build_root="$CACHE_DIR/build/pg$pg_version"
    build=$(compgen -G "$build_root/timescaledb-*/.built" | sort -V | tail -n 1 || true)
    if [[ -n $build ]]; then
        build=$(dirname "$build")
        log "installing cached build $(basename "$build")"
    else
        build=$(compile_timescaledb "$pg_version" "$build_root")
    fi
    make -C "$build" install >"$build_root/install.log" 2>&1 ||
        { tail -n 30 "$build_root/install.log" >&2; die "make install failed"; }
}

# Prints the build directory on stdout.
compile_timescaledb() {
    local pg_version=$1 build_root=$2
    local headers src build
    headers=$(server_headers "$pg_version")
    src=$(fetch_trixie_source)
    build="$build_root/$(basename "$src")"
    log "building $(basename "$src") against PostgreSQL $pg_version (about 30 s)"
    rm -rf "$build" && mkdir -p "$build_root"
    # PG_INCLUDEDIR points at the server headers too, so libpq-dev is not needed.
    cmake -S "$src" -B "$build" \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DAPACHE_ONLY=ON -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
        -DSEND_TELEMETRY_DEFAULT=OFF -DUSE_TELEMETRY=OFF \
        -DPG_CONFIG="$PG_BIN/pg_config" \
        -DPG_INCLUDEDIR_SERVER="$headers" -DPG_INCLUDEDIR="$headers" >"$build_root/cmake.log" 2>&1 ||
        { tail -n 30 "$build_root/cmake.log" >&2; die "cmake failed (log: $build_root/cmake.log)"; }
    make -C "$build" -j "$(nproc)" >"$build_root/make.log" 2>&1 ||
        { tail -n 30 "$build_root/make.log" >&2; die "build failed (log: $build_root/make.log)"; }
    touch "$build/.built"
    echo "$build"
}

# Server headers of exactly the installed version. Installing postgresql-server-dev would
# pull in (and restart) a newer server, so its package is only unpacked into the cache.
server_headers() {
    local pg_version=$1
    local dest="$CACHE_DIR/headers/$pg_version"
    local headers="$dest/usr/include/postgresql/$PG_MAJOR/server"
    if [[ ! -f $headers/pg_config.h ]]; then
        local tmp
        tmp=$(mktemp -d "$CACHE_DIR/download.XXXXXX")
        chown _apt "$tmp" # apt downloads as the unprivileged _apt user
        if ! (cd "$tmp" && apt-get download -qq "postgresql-server-dev-$PG_MAJOR=$pg_version" >&2); then
            apt-get update -qq >&2
            (cd "$tmp" && apt-get download -qq "postgresql-server-dev-$PG_MAJOR=$pg_version" >&2) ||
                die "postgresql-server-dev-$PG_MAJOR=$pg_version is not downloadable any more;" \
                    "upgrade postgresql-$PG_MAJOR (apt-get install postgresql-$PG_MAJOR) and retry"
        fi
        rm -rf "$dest" && mkdir -p "$dest"
        dpkg-deb -x "$tmp"/postgresql-server-dev-*.deb "$dest"
        rm -rf "$tmp"
    fi
    echo "$headers"
}

# Downloads and unpacks trixie's timescaledb source package; prints its directory.
# A private apt configuration keeps the host's sources and package cache untouched.
fetch_trixie_source() {
    local main security apt_dir="$CACHE_DIR/apt-trixie"
    main=$(host_mirror "$OS_CODENAME")
    security=$(host_mirror "$OS_CODENAME-security")
    [[ -n $main ]] || die "cannot find the host's Debian mirror in its apt sources"

    mkdir -p "$apt_dir/lists/partial" "$apt_dir/sources.list.d"
    {
        echo "deb-src $main trixie main"
        echo "deb-src $main trixie-updates main"
        [[ -z $security ]] || echo "deb-src $security trixie-security main"
    } >"$apt_dir/sources.list"
    local apt_opts=(
        -oDir::Etc::SourceList="$apt_dir/sources.list"
        -oDir::Etc::SourceParts="$apt_dir/sources.list.d"
        -oDir::State::Lists="$apt_dir/lists"
        -oDir::Cache::pkgcache= -oDir::Cache::srcpkgcache=
    )
    apt-get "${apt_opts[@]}" update -qq >&2

    local work="$CACHE_DIR/src"
    rm -rf "$work" && mkdir -p "$work" && chown _apt "$work"
    (cd "$work" && apt-get "${apt_opts[@]}" source -qq timescaledb >/dev/null 2>"$work/source.log") ||
        { cat "$work/source.log" >&2; die "apt-get source timescaledb failed"; }
    local unpacked=("$work"/timescaledb-*/)
    [[ -d ${unpacked[0]} ]] || die "apt-get source unpacked nothing into $work"
    echo "${unpacked[0]%/}"
}

ensure_installed() {
    [[ -x $PG_BIN/postgres ]] || install_server
    timescaledb_installed && return 0
    # Two clones starting at once must not build into the same directory.
    mkdir -p "$CACHE_DIR"
    exec 9>"$CACHE_DIR/install.lock"
    flock 9
    if ! timescaledb_installed; then
        if ((DEBIAN_MAJOR == 13)); then
            apt_install "postgresql-$PG_MAJOR-timescaledb"
        else
            build_timescaledb
        fi
    fi
    exec 9>&-
    timescaledb_installed || die "TimescaleDB is still missing after installation"
}

# --- editions ----------------------------------------------------------------------------

# The defaults that differ by edition, once the command line is read: two editions run side
# by side (`make test` uses both), so each has its own port, data directory and fallback.
apply_edition_defaults() {
    case $EDITION in
        apache) FALLBACK_NAME=tsdb ;;
        community)
            DEFAULT_DATA_DIR="$REPO_ROOT/.tsdb-community"
            DEFAULT_PORT=55433
            FALLBACK_NAME=tsdb-community
            ;;
        *) log "--edition must be apache or community, not $EDITION"; exit 2 ;;
    esac
    DATA_DIR=${DATA_DIR:-$DEFAULT_DATA_DIR}
    PORT=${PORT:-$DEFAULT_PORT}
}

# The community edition's source tarball on stdout; fails when there is none.
community_tarball() {
    local source=$COMMUNITY_SOURCE
    if [[ -d $source ]]; then
        source=$(compgen -G "$source/timescaledb-*.tar.gz" | sort -V | tail -n 1 || true)
    fi
    [[ -n $source && -f $source ]] || return 1
    echo "$source"
}

cmd_available() {
    if [[ $EDITION == community ]] && ! community_tarball >/dev/null; then
        log "the community edition needs the TimescaleDB source (timescaledb-X.Y.Z.tar.gz," \
            "upstream, with tsl/): none at $COMMUNITY_SOURCE; set TSDB_COMMUNITY_SOURCE"
        exit 3
    fi
    log "the $EDITION edition can be started here"
}

ensure_edition_installed() {
    if [[ $EDITION == apache ]]; then
        ensure_installed
    else
        ensure_community
    fi
}

# The community build lives in a private copy of PostgreSQL's bin, lib and share trees:
# the server finds $libdir and the extension directory relative to its own binary, so a
# copy started from there loads the community TimescaleDB, and the system's files (Debian's
# Apache build among them) are never touched. Cached per PostgreSQL version and tarball.
ensure_community() {
    [[ -x /usr/lib/postgresql/$PG_MAJOR/bin/postgres ]] || install_server
    local tarball pg_version sum
    tarball=$(community_tarball) ||
        die "no TimescaleDB source at $COMMUNITY_SOURCE (set TSDB_COMMUNITY_SOURCE)"
    pg_version=$(dpkg-query -W -f '${Version}' "postgresql-$PG_MAJOR")
    sum=$(sha256sum "$tarball" | cut -c1-12)
    COMMUNITY_ROOT="$CACHE_DIR/community/pg$pg_version-$sum"
    if [[ ! -f $COMMUNITY_ROOT/.installed ]]; then
        mkdir -p "$CACHE_DIR"
        exec 9>"$CACHE_DIR/install.lock"
        flock 9
        [[ -f $COMMUNITY_ROOT/.installed ]] || build_community "$tarball" "$pg_version"
        exec 9>&-
    fi
    PG_BIN=$COMMUNITY_ROOT/usr/lib/postgresql/$PG_MAJOR/bin
}

build_community() {
    local tarball=$1 pg_version=$2
    require_root "the community edition of TimescaleDB"
    # libpq-dev: the community part (tsl/) includes libpq-fe.h, a client header.
    apt_install gcc make cmake libssl-dev libpq-dev
    local headers work=$COMMUNITY_ROOT.build staging=$COMMUNITY_ROOT.tmp src
    headers=$(server_headers "$pg_version")
    rm -rf "$work" "$staging" "$COMMUNITY_ROOT" && mkdir -p "$work"
    tar -xzf "$tarball" -C "$work"
    src=$(compgen -G "$work/timescaledb-*/" | head -n 1 || true)
    [[ -n $src ]] || die "$tarball holds no timescaledb-*/ directory"
    src=${src%/}
    log "building the community edition $(basename "$src") against PostgreSQL $pg_version" \
        "(about 2 minutes)"
    # Debian's flags for its Apache build, without APACHE_ONLY; warnings are not errors
    # because upstream's warning set is tuned to other compilers.
    cmake -S "$src" -B "$work/build" \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
        -DWARNINGS_AS_ERRORS=OFF -DSEND_TELEMETRY_DEFAULT=OFF -DUSE_TELEMETRY=OFF \
        -DPG_CONFIG="/usr/lib/postgresql/$PG_MAJOR/bin/pg_config" \
        -DPG_INCLUDEDIR_SERVER="$headers" -DPG_INCLUDEDIR=/usr/include/postgresql \
        >"$work/cmake.log" 2>&1 ||
        { tail -n 30 "$work/cmake.log" >&2; die "cmake failed (log: $work/cmake.log)"; }
    make -C "$work/build" -j "$(nproc)" >"$work/make.log" 2>&1 ||
        { tail -n 30 "$work/make.log" >&2; die "build failed (log: $work/make.log)"; }
    mkdir -p "$staging/usr/lib/postgresql" "$staging/usr/share/postgresql"
    cp -a "/usr/lib/postgresql/$PG_MAJOR" "$staging/usr/lib/postgresql/"
    cp -a "/usr/share/postgresql/$PG_MAJOR" "$staging/usr/share/postgresql/"
    rm -f "$staging/usr/lib/postgresql/$PG_MAJOR/lib"/timescaledb*.so \
        "$staging/usr/share/postgresql/$PG_MAJOR/extension"/timescaledb*
    make -C "$work/build" install DESTDIR="$staging" >"$work/install.log" 2>&1 ||
        { tail -n 30 "$work/install.log" >&2; die "make install failed (log: $work/install.log)"; }
    [[ -f $staging/usr/share/postgresql/$PG_MAJOR/extension/timescaledb.control ]] ||
        die "make install put no timescaledb.control into $staging"
    rm -rf "$src" "$work/build" # the logs stay
    touch "$staging/.installed"
    mv "$staging" "$COMMUNITY_ROOT"
}

# The licence is what tells the two editions apart at run time: 'timescale' loads the
# community module; the Apache build has only 'apache'.
write_edition_settings() {
    local licence=apache
    [[ $EDITION == apache ]] || licence=timescale
    grep -q "^include_if_exists = 'edition.conf'" "$DATA_DIR/postgresql.conf" ||
        echo "include_if_exists = 'edition.conf'" | as_postgres tee -a "$DATA_DIR/postgresql.conf" >/dev/null
    echo "timescaledb.license = '$licence'" | as_postgres tee "$DATA_DIR/edition.conf" >/dev/null
}

# --- the cluster -------------------------------------------------------------------------

# Commands the server side runs: PostgreSQL refuses to run as root. From /, because the
# caller's directory may be out of the postgres user's reach.
as_postgres() {
    if [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# The default lives in the repo, but a repo under e.g. /root is out of the postgres user's
# reach; then fall back to a directory of its own, named after the repo so clones don't share.
resolve_data_dir() {
    [[ $EUID -eq 0 ]] || return 0
    id postgres >/dev/null 2>&1 || return 0 # not installed yet: start installs it first
    local existing=$DATA_DIR
    while [[ ! -e $existing ]]; do existing=$(dirname "$existing"); done
    as_postgres test -x "$existing" && return 0
    if [[ $DATA_DIR == "$DEFAULT_DATA_DIR" ]]; then
        local key
        key=$(printf '%s' "$REPO_ROOT" | cksum | cut -d' ' -f1)
        DATA_DIR="/var/lib/postgresql/$FALLBACK_NAME-$key"
        log "$existing is out of the postgres user's reach; using $DATA_DIR"
    else
        die "the postgres user cannot reach $DATA_DIR; choose another --data-dir"
    fi
}

is_running() {
    [[ -f $DATA_DIR/PG_VERSION ]] && as_postgres "$PG_BIN/pg_ctl" status -D "$DATA_DIR" >/dev/null 2>&1
}

running_port() {
    sed -n 4p "$DATA_DIR/postmaster.pid"
}

# Another process listening on the port (another checkout's server, most often) would make
# pg_ctl wait its whole timeout and then say only "the server did not start": name it now.
check_port_free() {
    local holder=
    if command -v ss >/dev/null; then
        # e.g. users:(("postgres",pid=1234,fd=6)); -p needs root to see other users' processes
        holder=$(ss -H -ltnp "sport = :$PORT" 2>/dev/null | head -n 1) || holder=
        [[ -n $holder ]] || return 0
        local pid
        pid=$(grep -o 'pid=[0-9]*' <<<"$holder" | head -n 1 | cut -d= -f2) || pid=
        if [[ -n $pid ]]; then
            holder="pid $pid: $(ps -o args= -p "$pid" 2>/dev/null | cut -c1-160 || echo '?')"
        else
            holder="a process this user cannot see (ss: ${holder//  / })"
        fi
    elif (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; then
        holder="a process that ss (iproute2, not installed) could name"
    else
        return 0
    fi
    die "port $PORT is already in use by $holder; stop it, or choose another port:" \
        "TSDB_PORT=<port> $0 start (or --port <port>)"
}

print_settings() {
    printf 'DB_HOST=%s\nDB_PORT=%s\nDB_NAME=%s\nDB_USER=%s\n' "$HOST" "$PORT" "$DB_NAME" "$DB_USER"
}

init_cluster() {
    log "creating a cluster in $DATA_DIR"
    mkdir -p "$DATA_DIR"
    chown postgres:postgres "$DATA_DIR" 2>/dev/null || true
    chmod 700 "$DATA_DIR"
    as_postgres "$PG_BIN/initdb" -D "$DATA_DIR" -U "$DB_USER" --auth=trust \
        --no-locale -E UTF8 >/dev/null
    # The settings below are rewritten at every start so that tuning changes reach old clusters.
    echo "include_if_exists = 'testbed.conf'" | as_postgres tee -a "$DATA_DIR/postgresql.conf" >/dev/null
}

# Sized for a 2-core, 24 GB machine that also runs the ingester and the tests. Durability is
# traded for speed throughout: the cluster is disposable.
write_settings() {
    as_postgres tee "$DATA_DIR/testbed.conf" >/dev/null <<EOF
# Written by scripts/timescaledb.sh at every start; edits here are lost.
listen_addresses = '$HOST'
port = $PORT
# TCP only: no socket directory to share (or fight over) with other clusters.
unix_socket_directories = ''
shared_preload_libraries = 'timescaledb'
# No timescaledb.telemetry_level: Debian builds TimescaleDB with USE_TELEMETRY=OFF (and so
# does build_timescaledb), so the setting does not exist and nothing is ever sent.

# Disposable data: skip the work that only protects against crashes.
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = minimal
max_wal_senders = 0

# A quarter of RAM would starve the rest of the box; 1 GB holds a day-chunk's indexes
# for the benchmark cohorts.
shared_buffers = 1GB
effective_cache_size = 8GB
work_mem = 32MB
maintenance_work_mem = 512MB
# Bulk COPY fills WAL fast; rarer checkpoints keep benchmarks from measuring them.
max_wal_size = 8GB
min_wal_size = 1GB
checkpoint_timeout = 15min
max_connections = 100
# Two cores: more parallel workers would only compete with the ingester.
max_worker_processes = 16
max_parallel_workers = 2
max_parallel_workers_per_gather = 1
timescaledb.max_background_workers = 8

logging_collector = off
log_min_messages = warning
EOF
}

psql_admin() {
    local db=$1
    shift
    "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$HOST" -p "$PORT" -U "$DB_USER" -d "$db" "$@"
}

create_database() {
    psql_admin postgres -v db="$DB_NAME" >/dev/null <<'SQL'
SELECT format('CREATE DATABASE %I', :'db')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL
    local version
    version=$(psql_admin "$DB_NAME" -tA <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS timescaledb;
SELECT extversion FROM pg_extension WHERE extname = 'timescaledb';
SQL
    )
    log "TimescaleDB $version in database $DB_NAME on $HOST:$PORT"
}

cmd_start() {
    ((!WIPE)) || cmd_destroy
    ensure_edition_installed
    resolve_data_dir
    if is_running; then
        local port
        port=$(running_port)
        [[ $port == "$PORT" ]] || die "already running on port $port; stop it first to change the port"
    else
        check_port_free
        if [[ -f $DATA_DIR/PG_VERSION ]]; then
            local major
            major=$(<"$DATA_DIR/PG_VERSION")
            [[ $major == "$PG_MAJOR" ]] ||
                die "$DATA_DIR holds a PostgreSQL $major cluster; destroy it to use $PG_MAJOR"
        else
            init_cluster
        fi
        write_settings
        write_edition_settings
        log "starting PostgreSQL $PG_MAJOR ($EDITION edition) on $HOST:$PORT"
        if ! as_postgres "$PG_BIN/pg_ctl" start -D "$DATA_DIR" -l "$DATA_DIR/server.log" -w -t 120 -s; then
            tail -n 20 "$DATA_DIR/server.log" >&2 || true
            die "the server did not start (log: $DATA_DIR/server.log)"
        fi
    fi
    create_database
    print_settings
}

cmd_stop() {
    resolve_data_dir
    if is_running; then
        as_postgres "$PG_BIN/pg_ctl" stop -D "$DATA_DIR" -m fast -w -s
        log "stopped"
    else
        log "not running"
    fi
}

cmd_status() {
    resolve_data_dir
    if is_running; then
        PORT=$(running_port)
        print_settings
    else
        log "not running ($DATA_DIR)"
        exit 3
    fi
}

cmd_destroy() {
    cmd_stop
    [[ -e $DATA_DIR ]] || return 0
    # Refuse to wipe a directory that isn't a cluster: a mistyped --data-dir must not cost data.
    if [[ -f $DATA_DIR/PG_VERSION || -z $(ls -A "$DATA_DIR") ]]; then
        rm -rf "$DATA_DIR"
        log "destroyed $DATA_DIR"
    else
        die "$DATA_DIR does not look like a PostgreSQL cluster; not deleting it"
    fi
}

# --- command line ------------------------------------------------------------------------

COMMAND=
while (($#)); do
    case $1 in
        --data-dir) DATA_DIR=${2:?--data-dir needs a value}; shift 2 ;;
        --data-dir=*) DATA_DIR=${1#*=}; shift ;;
        --port) PORT=${2:?--port needs a value}; shift 2 ;;
        --port=*) PORT=${1#*=}; shift ;;
        --db-name) DB_NAME=${2:?--db-name needs a value}; shift 2 ;;
        --db-name=*) DB_NAME=${1#*=}; shift ;;
        --wipe) WIPE=1; shift ;;
        --edition) EDITION=${2:?--edition needs a value}; shift 2 ;;
        --edition=*) EDITION=${1#*=}; shift ;;
        -h | --help) usage ;;
        start | stop | status | destroy | available)
            [[ -z $COMMAND ]] || usage
            COMMAND=$1
            shift
            ;;
        *) log "unknown argument: $1"; usage ;;
    esac
done
[[ -n $COMMAND ]] || usage
apply_edition_defaults
[[ $PORT =~ ^[0-9]+$ ]] || die "--port must be a number, not $PORT"
# A relative --data-dir would change meaning with pg_ctl's working directory.
[[ $DATA_DIR == /* ]] || DATA_DIR="$PWD/$DATA_DIR"

"cmd_$COMMAND"
