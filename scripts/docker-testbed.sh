#!/usr/bin/env bash
# A Docker engine with Compose v2 and BuildKit, and the base images docker-compose.yml and
# ingestion/Dockerfile name, for the tests of the real stack (tests/test_docker.py) on a
# Debian 12 or 13 machine. Needs root.
#
#   scripts/docker-testbed.sh start|stop|status
#
# `start` prints shell-sourceable lines on stdout (DOCKER=…, DOCKER_HOST=…, DOCKER_CONFIG=…),
# everything else goes to stderr, so `eval "$(scripts/docker-testbed.sh start)"` works and
# "$DOCKER" compose … then talks to the engine. What it does:
#   engine   the machine's own, if its server is >= MIN_ENGINE with Compose >= MIN_COMPOSE and
#            buildx; else Debian 13's docker.io, docker-cli, docker-buildx, docker-compose,
#            containerd and tini, unpacked (scripts/debian-fetch.sh) with runc of this
#            machine's own release (trixie's runc needs glibc 2.38), run as a private dockerd
#            with its own socket and data root
#   images   python:3.11-slim-bookworm and the timescale/timescaledb tag docker-compose.yml
#            names: used as they are when present or pullable; else stand-ins built from
#            Debian packages alone (mmdebstrap + docker import), see docker-testbed/
#   cache    $DOCKER_TESTBED_CACHE (default /var/cache/wearables-docker): the unpacked engine
#            and the engine's data root with the images, so a second start takes seconds
# `stop` stops the private engine (never the machine's own); `status` exits 0 if it runs.
set -euo pipefail
shopt -s inherit_errexit

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE="$REPO_ROOT/scripts/docker-testbed"
CACHE=${DOCKER_TESTBED_CACHE:-/var/cache/wearables-docker}
RUN_DIR=/run/wearables-docker
SOCKET="$RUN_DIR/docker.sock"
RUNC_ROOT="$CACHE/runc"
# tests/test_docker.py runs on Docker 26.1 (Debian 13); docs/operations.md says why these minimums.
MIN_ENGINE=23.0
MIN_COMPOSE=2.24
ENGINE=trixie
ENGINE_PACKAGES=(docker.io docker-cli docker-buildx docker-compose containerd tini)
ENGINE_ROOT="$CACHE/engine"
CONFIG_DIR="$CACHE/config"
DATA_ROOT="$CACHE/data"
# Bump to rebuild the stand-ins after a change of their recipe below.
RECIPE=2

log() { printf 'docker-testbed.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

version_at_least() { # $1 >= $2
    [ "$(printf '%s\n%s\n' "$2" "${1#v}" | sort -V | head -n1)" = "$2" ]
}

host_codename() { (. /etc/os-release && echo "${VERSION_CODENAME:-unknown}"); }

# The archive this machine's own apt sources use (fallback: deb.debian.org).
host_mirror() {
    local uri
    # shellcheck disable=SC2016 # $(REPO_URI) is apt's own placeholder
    uri=$(apt-get indextargets --no-release-info --format '$(REPO_URI)' "Identifier: Packages" \
        2>/dev/null | grep -m1 -E '/debian/?$' || true)
    printf '%s\n' "${uri:-http://deb.debian.org/debian/}"
}

apt_install_missing() {
    local pkg missing=()
    for pkg in "$@"; do
        [ "$(dpkg-query -W -f '${db:Status-Status}' "$pkg" 2>/dev/null)" = installed ] ||
            missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o DPkg::Lock::Timeout=300 "${missing[@]}" >&2
}

# --- the engine ----------------------------------------------------------------------------

# The machine's own engine, if it is good enough: prints the settings and succeeds.
own_engine() {
    local docker server compose
    docker=$(command -v docker) || return 1
    server=$(timeout 10 "$docker" version --format '{{.Server.Version}}' 2>/dev/null) || return 1
    compose=$("$docker" compose version --short 2>/dev/null) || return 1
    "$docker" buildx version >/dev/null 2>&1 || return 1
    version_at_least "$server" "$MIN_ENGINE" && version_at_least "$compose" "$MIN_COMPOSE" || {
        log "the machine's engine $server / Compose $compose is older than $MIN_ENGINE / $MIN_COMPOSE: using a private one"
        return 1
    }
    log "using the machine's own engine $server, Compose $compose"
    printf 'DOCKER=%s\nDOCKER_HOST=%s\n' "$docker" "${DOCKER_HOST:-unix:///var/run/docker.sock}"
}

# Succeeds if this engine (not the other one) answers on the socket.
private_running() {
    local root
    [ -S "$SOCKET" ] || return 1
    root=$(timeout 10 env DOCKER_HOST="unix://$SOCKET" DOCKER_CONFIG="$CONFIG_DIR" \
        "$ENGINE_ROOT/usr/bin/docker" info --format '{{.DockerRootDir}}' 2>/dev/null) || return 1
    [ "$root" = "$DATA_ROOT" ]
}

fetch_engine() {
    local fetch="$REPO_ROOT/scripts/debian-fetch.sh" stamp="$ENGINE_ROOT/.fetched-${ENGINE_PACKAGES[*]}"
    stamp=${stamp// /-}
    if [ ! -e "$stamp" ]; then
        "$fetch" "$ENGINE" "$ENGINE_ROOT" "${ENGINE_PACKAGES[@]}"
        touch "$stamp"
    fi
    if [ ! -e "$RUNC_ROOT/.fetched" ]; then
        "$fetch" "$(host_codename)" "$RUNC_ROOT" runc
        touch "$RUNC_ROOT/.fetched"
    fi
    mkdir -p "$CONFIG_DIR/cli-plugins"
    local plugin
    for plugin in docker-compose docker-buildx; do
        ln -sfn "$ENGINE_ROOT/usr/libexec/docker/cli-plugins/$plugin" "$CONFIG_DIR/cli-plugins/"
    done
}

start_private_engine() {
    # dockerd sets up NAT for the default bridge with iptables; the rest comes unpacked.
    apt_install_missing iptables
    fetch_engine
    private_running && return 0
    [ ! -S "$SOCKET" ] || stop_private_engine # one left from another data root
    mkdir -p "$RUN_DIR" "$DATA_ROOT"
    log "starting dockerd (Debian $ENGINE's, data in $DATA_ROOT, socket $SOCKET)"
    # setsid: the engine outlives the shell that started it, and a Ctrl-C there.
    PATH="$ENGINE_ROOT/usr/bin:$ENGINE_ROOT/usr/sbin:$RUNC_ROOT/usr/sbin:$PATH" setsid dockerd \
        --host "unix://$SOCKET" --data-root "$DATA_ROOT" --exec-root "$RUN_DIR/exec" \
        --pidfile "$RUN_DIR/dockerd.pid" >"$RUN_DIR/dockerd.log" 2>&1 </dev/null &
    local waited
    for waited in $(seq 1 120); do
        private_running && return 0
        kill -0 $! 2>/dev/null || { tail -n 20 "$RUN_DIR/dockerd.log" >&2; die "dockerd exited"; }
        sleep 0.5
    done
    tail -n 20 "$RUN_DIR/dockerd.log" >&2
    die "dockerd did not answer within 60 s"
}

stop_private_engine() {
    local pid
    pid=$(cat "$RUN_DIR/dockerd.pid" 2>/dev/null) || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    log "stopping dockerd ($pid)"
    kill -TERM "$pid"
    local waited
    for waited in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.5
    done
    die "dockerd ($pid) did not stop within 30 s"
}

# --- the base images ---------------------------------------------------------------------

# As in Docker's official Debian images: apt keeps no package cache in a layer (without it,
# one `apt-get install` leaves ~75 MB of /var/cache/apt/*.bin in the image).
DOCKER_CLEAN='Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
APT::Keep-Downloaded-Packages "false";'

# The stand-ins' recipes: the mmdebstrap arguments of the rootfs, then their Dockerfile.
python_rootfs() {
    local mirror=$1 out=$2
    # The official image has no EXTERNALLY-MANAGED marker and python/pip in /usr/local/bin.
    # The host's CA bundle: where PyPI is reached through a TLS-intercepting proxy (as on
    # these machines) it holds the proxy's CA; elsewhere it is Debian's own bundle.
    mmdebstrap --quiet --variant=minbase --include=python3,python3-pip,ca-certificates \
        --customize-hook='rm -f "$1"/usr/lib/python3.*/EXTERNALLY-MANAGED' \
        --customize-hook='for n in python python3; do ln -sf /usr/bin/python3 "$1/usr/local/bin/$n"; done' \
        --customize-hook='for n in pip pip3; do ln -sf /usr/bin/pip3 "$1/usr/local/bin/$n"; done' \
        --customize-hook='copy-in /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs' \
        --customize-hook="printf '%s\n' '$DOCKER_CLEAN' >\"\$1/etc/apt/apt.conf.d/docker-clean\"" \
        --customize-hook='rm -f "$1"/var/cache/apt/*.bin' \
        bookworm "$out" "$mirror"
}

# TimescaleDB on its own, so another build (e.g. the community edition) can replace it here:
# Debian's package is the Apache-licensed edition.
timescaledb_install() {
    printf '%s\n' --include=postgresql-17-timescaledb
}

timescaledb_rootfs() {
    local mirror=$1 out=$2 install
    mapfile -t install < <(timescaledb_install)
    # postgresql-common creates a `main` cluster on install; the entrypoint uses PGDATA instead.
    mmdebstrap --quiet --variant=minbase --include=postgresql-17 "${install[@]}" \
        --customize-hook='rm -rf "$1"/var/lib/postgresql/17 "$1"/etc/postgresql/17' \
        trixie "$out" "$mirror"
}

# A stand-in's key: its recipe and inputs, so a change rebuilds it and nothing else does.
standin_key() {
    local kind=$1
    {
        echo "$RECIPE"
        declare -f "${kind}_rootfs"
        [ "$kind" != timescaledb ] || declare -f timescaledb_install
        cat "$HERE/$kind.Dockerfile"
        [ "$kind" != timescaledb ] || cat "$HERE/timescaledb-entrypoint.sh"
        [ "$kind" != python ] || cksum </etc/ssl/certs/ca-certificates.crt
    } | cksum | cut -d' ' -f1
}

# Succeeds if IMAGE is there to use: present (the real one, or a current stand-in), or pulled.
image_ready() {
    local image=$1 kind=$2 label
    if label=$("$DOCKER" image inspect --format '{{index .Config.Labels "wearables.testbed.standin"}}' \
        "$image" 2>/dev/null); then
        if [ -z "$label" ] || [ "$label" = "<no value>" ]; then
            log "$image: the real image is present"
            return 0
        fi
        [ "$label" = "$(standin_key "$kind")" ] && return 0
        log "$image: the stand-in's recipe changed, rebuilding it"
        return 1
    fi
    if timeout 60 "$DOCKER" pull --quiet "$image" >/dev/null 2>&1; then
        log "$image: pulled"
        return 0
    fi
    log "$image: cannot be pulled, building a stand-in from Debian packages"
    return 1
}

build_standin() {
    local image=$1 kind=$2 key work rootfs
    key=$(standin_key "$kind")
    rootfs="wearables-testbed/$kind-rootfs:$key"
    work=$(mktemp -d)
    # shellcheck disable=SC2064 # expand now
    trap "rm -rf '$work'" RETURN
    "${kind}_rootfs" "$(host_mirror)" "$work/rootfs.tar"
    "$DOCKER" import "$work/rootfs.tar" "$rootfs" >/dev/null
    "$DOCKER" build --quiet --build-arg "ROOTFS=$rootfs" --label "wearables.testbed.standin=$key" \
        -f "$HERE/$kind.Dockerfile" -t "$image" "$HERE" >/dev/null
    "$DOCKER" rmi "$rootfs" >/dev/null
    # The stand-in this one replaces, now untagged.
    "$DOCKER" image prune -f --filter "label=wearables.testbed.standin" >/dev/null
    log "$image: stand-in built"
}

ensure_images() {
    local kind image pids=() missing=()
    for kind in python timescaledb; do
        image=$("${kind}_image")
        image_ready "$image" "$kind" || missing+=("$kind")
    done
    ((${#missing[@]})) || return 0
    apt_install_missing mmdebstrap
    # Side by side: each is mostly downloading and unpacking.
    for kind in "${missing[@]}"; do
        build_standin "$("${kind}_image")" "$kind" &
        pids+=($!)
    done
    local pid failed=0
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    ((!failed)) || die "a stand-in image could not be built"
}

timescaledb_image() {
    local image
    image=$(grep -m1 -oE 'timescale/timescaledb:[^[:space:]"]+' "$REPO_ROOT/docker-compose.yml") ||
        die "docker-compose.yml names no timescale/timescaledb image"
    printf '%s\n' "$image"
}

python_image() {
    local image
    image=$(grep -m1 -oE '^FROM [^[:space:]]+' "$REPO_ROOT/ingestion/Dockerfile") ||
        die "ingestion/Dockerfile has no FROM line"
    printf '%s\n' "${image#FROM }"
}

# --- commands ----------------------------------------------------------------------------

cmd_start() {
    [ "$(id -u)" -eq 0 ] || die "needs root (it runs dockerd and installs what is missing)"
    local settings
    if ! settings=$(own_engine); then
        start_private_engine
        settings=$(printf 'DOCKER=%s\nDOCKER_HOST=%s\nDOCKER_CONFIG=%s\n' \
            "$ENGINE_ROOT/usr/bin/docker" "unix://$SOCKET" "$CONFIG_DIR")
    fi
    local DOCKER DOCKER_HOST DOCKER_CONFIG=${DOCKER_CONFIG:-}
    eval "$settings"
    export DOCKER_HOST DOCKER_CONFIG
    ensure_images
    printf '%s\n' "$settings"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) stop_private_engine ;;
    status) private_running ;;
    *) sed -n '2,/^set -euo/{/^#/s/^# \{0,1\}//p}' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
