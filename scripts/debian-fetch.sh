#!/usr/bin/env bash
# Unpacks binary packages of another Debian release into a directory, without installing them:
#
#   scripts/debian-fetch.sh CODENAME DEST PACKAGE...
#
# e.g. `scripts/debian-fetch.sh trixie /var/cache/x/root docker-compose` leaves trixie's
# /usr/libexec/docker/cli-plugins/docker-compose under /var/cache/x/root. The packages come
# through a private apt configuration (sources, lists and cache under DEST.apt, removed
# afterwards) from the mirror this machine's own apt sources use, so the host's sources, lists
# and package database stay untouched. Only the named packages are fetched, not their
# dependencies: the caller names what it needs. DEST is replaced. Messages go to stderr.
set -euo pipefail

log() { printf 'debian-fetch.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

(($# >= 3)) || die "usage: debian-fetch.sh CODENAME DEST PACKAGE..."
codename=$1 dest=$2
shift 2

# The archive this machine's own apt sources use (fallback: deb.debian.org).
# shellcheck disable=SC2016 # $(REPO_URI) is apt's own placeholder, not the shell's
mirror=$(apt-get indextargets --no-release-info --format '$(REPO_URI)' \
    "Identifier: Packages" 2>/dev/null | grep -m1 -E '/debian/?$' || true)
mirror=${mirror:-http://deb.debian.org/debian/}

apt_dir="$dest.apt"
rm -rf "$apt_dir"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/sources.d" \
    "$apt_dir/download"
printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
    "$mirror" "$codename" >"$apt_dir/sources.list"
private=(
    -o "Dir::Etc::SourceList=$apt_dir/sources.list"
    -o "Dir::Etc::SourceParts=$apt_dir/sources.d"
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::Cache=$apt_dir/cache"
    -o "Acquire::Languages=none"
    -o "APT::Sandbox::User=root" # files land in our directory, which _apt cannot write
)
log "fetching $* from Debian $codename ($mirror)"
apt-get -q "${private[@]}" update >&2
(cd "$apt_dir/download" && apt-get -q "${private[@]}" download "$@" >&2)
rm -rf "$dest"
mkdir -p "$dest"
for deb in "$apt_dir"/download/*.deb; do
    dpkg-deb -x "$deb" "$dest"
done
rm -rf "$apt_dir" # lists and .debs: tens of MB, not needed again
