#!/usr/bin/env bash
# Finds or installs a Docker Compose v2 client (>= 2.24) on Debian, with or without a Docker
# engine, and prints its path on stdout: `"$(scripts/compose-client.sh)" config` works, and
# so does `docker compose` once the docker CLI is there (the binary is linked as its plugin).
#
#   Compose already installed   used as it is
#   Debian 13 and later, root   apt-get install docker-compose (2.26 in trixie)
#   Debian 12, or not root      bookworm's docker-compose is the old Python 1.29, so trixie's
#                               .deb (a static Go binary that needs only libc6 >= 2.34) is
#                               unpacked into the cache by scripts/debian-fetch.sh, leaving the
#                               host's sources, lists and package database untouched
#
# Cache: $COMPOSE_CACHE_DIR (default ${XDG_CACHE_HOME:-~/.cache}/wearables-compose); a second
# run finds the binary there and does no network access. Messages go to stderr.
set -euo pipefail

MIN_VERSION=2.24 # env_file entries with `required:` (docker-compose.yml) arrived in 2.24.0
# The release whose docker-compose package is fetched for Debian 12.
DONOR_CODENAME=trixie
CACHE_DIR=${COMPOSE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/wearables-compose}
PLUGIN_DIRS=(
    "$HOME/.docker/cli-plugins"
    /usr/local/lib/docker/cli-plugins
    /usr/local/libexec/docker/cli-plugins
    /usr/lib/docker/cli-plugins
    /usr/libexec/docker/cli-plugins
)

log() { printf 'compose-client.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Succeeds if $1 runs and reports a version >= MIN_VERSION.
good_enough() {
    local version
    version=$("$1" version --short 2>/dev/null) || return 1
    version=${version#v}
    [ "$(printf '%s\n%s\n' "$MIN_VERSION" "$version" | sort -V | head -n1)" = "$MIN_VERSION" ]
}

find_installed() {
    local candidate
    for candidate in "$CACHE_DIR/root/usr/libexec/docker/cli-plugins/docker-compose" \
        "${PLUGIN_DIRS[@]/%//docker-compose}" "$(command -v docker-compose || true)"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ] && good_enough "$candidate"; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

install_compose() {
    local id version_id
    # shellcheck source=/dev/null
    read -r id version_id < <(. /etc/os-release && echo "${ID:-unknown} ${VERSION_ID:-0}")
    [ "$id" = debian ] || die "no Compose >= $MIN_VERSION found, and this is $id, not Debian: install Docker Compose v2"
    if [ "${version_id%%.*}" -ge 13 ] && [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            docker-compose >&2
    else
        log "fetching docker-compose from Debian $DONOR_CODENAME into $CACHE_DIR"
        "$(dirname "${BASH_SOURCE[0]}")/debian-fetch.sh" "$DONOR_CODENAME" "$CACHE_DIR/root" \
            docker-compose
    fi
}

# Lets `docker compose` find the binary, unless the docker CLI already has a plugin.
link_as_docker_plugin() {
    local plugin="$HOME/.docker/cli-plugins/docker-compose"
    command -v docker >/dev/null || return 0
    docker compose version >/dev/null 2>&1 && return 0
    mkdir -p "$(dirname "$plugin")"
    ln -sfn "$1" "$plugin"
}

main() {
    local compose
    if ! compose=$(find_installed); then
        install_compose
        compose=$(find_installed) || die "installed docker-compose, but found no Compose >= $MIN_VERSION"
    fi
    link_as_docker_plugin "$compose"
    printf '%s\n' "$compose"
}

main "$@"
