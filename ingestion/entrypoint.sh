#!/bin/bash
# Entrypoint of the ingester container: Debian cron runs `python ingest.py` on a schedule, as
# the unprivileged user $JOB_USER, with the container's environment and its output in
# `docker compose logs ingester`.
#
#   entrypoint.sh [run]   check the settings, write the job's environment file and
#                         /etc/cron.d/ingester, run once now if RUN_ON_START, then keep cron
#                         in the foreground until SIGTERM (docker compose stop)
#   entrypoint.sh prepare only check the settings and write the two files (tests use it)
#   entrypoint.sh CMD...  run CMD instead (e.g. python /app/ingest.py status)
#
# Settings (environment):
#   INGEST_SCHEDULE  five cron fields, default "0 1 * * *"
#   TZ               zone the schedule is read in, default UTC (data timestamps are UTC whatever it is)
#   RUN_ON_START     true|false, default true: one run at container start
#   INGEST_ARGS      extra arguments for ingest.py in every run, default none
# Paths, overridable so the tests can run this script outside the image:
#   APP_DIR (/app), PYTHON (/usr/local/bin/python), JOB_USER (ingester),
#   CRON_TEMPLATE ($APP_DIR/crontab), CRON_FILE (/etc/cron.d/ingester),
#   INGEST_ENV_FILE (/run/ingester/job.env), INGEST_LOG_OUT (/run/ingester/stdout),
#   INGEST_LOG_ERR (/run/ingester/stderr)
# A bad setting stops the container with exit status 2 and one line naming the variable.
set -euo pipefail

export APP_DIR=${APP_DIR:-/app}
export PYTHON=${PYTHON:-/usr/local/bin/python}
export JOB_USER=${JOB_USER:-ingester}
export CRON_TEMPLATE=${CRON_TEMPLATE:-$APP_DIR/crontab}
export CRON_FILE=${CRON_FILE:-/etc/cron.d/ingester}
export INGEST_ENV_FILE=${INGEST_ENV_FILE:-/run/ingester/job.env}
export INGEST_LOG_OUT=${INGEST_LOG_OUT:-/run/ingester/stdout}
export INGEST_LOG_ERR=${INGEST_LOG_ERR:-/run/ingester/stderr}
export INGEST_SCHEDULE=${INGEST_SCHEDULE:-0 1 * * *}
export RUN_ON_START=${RUN_ON_START:-true}
export INGEST_ARGS=${INGEST_ARGS:-}
export TZ=${TZ:-UTC}

# Seconds a running job gets to end after SIGTERM before it is killed; under Docker's default
# 10 s stop timeout, so the container always stops by itself.
STOP_GRACE_SECONDS=8

# Variables of the entrypoint's own process that must not reach the job: cron sets them for
# the job user.
NOT_FOR_THE_JOB=" HOME PWD OLDPWD SHLVL _ USER LOGNAME SHELL MAIL "

log() { echo "entrypoint: $*"; }
die() { echo "entrypoint: $*" >&2; exit 2; }

is_root() { [ "$(id -u)" -eq 0 ]; }

as_job_user() {
    if is_root && [ "$JOB_USER" != root ]; then
        setpriv --reuid="$JOB_USER" --regid="$(id -g "$JOB_USER")" --init-groups "$@"
    else
        "$@"
    fi
}

check_settings() {
    local fields schedule_chars='^[0-9A-Za-z*/, -]+$'
    read -r -a fields <<<"$INGEST_SCHEDULE"
    if [ "${#fields[@]}" -ne 5 ] || ! [[ "${fields[*]}" =~ $schedule_chars ]]; then
        die "INGEST_SCHEDULE must be 5 cron fields (minute hour day-of-month month day-of-week), e.g. \"0 1 * * *\", got \"$INGEST_SCHEDULE\""
    fi
    INGEST_SCHEDULE="${fields[*]}"

    case "${RUN_ON_START,,}" in
        true | 1 | yes | on) RUN_ON_START=true ;;
        false | 0 | no | off) RUN_ON_START=false ;;
        *) die "RUN_ON_START must be true or false, got \"$RUN_ON_START\"" ;;
    esac

    local zone=${TZ#:}
    if [ "$zone" != UTC ] && { [[ "$zone" == *..* ]] || [ ! -f "/usr/share/zoneinfo/$zone" ]; }; then
        die "TZ must be a zone name from /usr/share/zoneinfo such as UTC or Europe/Berlin, got \"$TZ\""
    fi

    id -u "$JOB_USER" >/dev/null 2>&1 || die "JOB_USER must be an existing user, got \"$JOB_USER\""
    local name
    for name in CRON_FILE INGEST_ENV_FILE INGEST_LOG_OUT INGEST_LOG_ERR; do
        [[ "${!name}" == /* && "${!name}" != *\'* ]] ||
            die "$name must be an absolute path without single quotes, got \"${!name}\""
    done
    [ -r "$CRON_TEMPLATE" ] || die "CRON_TEMPLATE must be a readable file, got \"$CRON_TEMPLATE\""
}

# A directory for the job's own files: created for the job user if missing, left alone if not.
ensure_job_dir() {
    [ -d "$1" ] && return
    mkdir -p "$1"
    chmod 0700 "$1"
    if is_root; then chown "$JOB_USER:" "$1"; fi
}

# The container's environment as `export NAME='value'` lines that /bin/sh can source: the cron
# job sees nothing else. It holds the secrets, so only the job user may read it.
write_env_file() {
    local tmp name value
    ensure_job_dir "$(dirname "$INGEST_ENV_FILE")"
    tmp=$(mktemp "$INGEST_ENV_FILE.XXXXXX") # mode 0600
    {
        echo "# Written by entrypoint.sh at container start; the cron job sources it."
        for name in $(compgen -e); do
            [[ "$NOT_FOR_THE_JOB" == *" $name "* ]] && continue
            value=${!name}
            printf "export %s='%s'\n" "$name" "${value//\'/\'\\\'\'}"
        done
    } >"$tmp"
    if is_root; then chown "$JOB_USER:" "$tmp"; fi
    mv -f "$tmp" "$INGEST_ENV_FILE"
}

render_cron_file() {
    local text tmp
    # The template's comments describe the placeholders; the rendered file says where it came from.
    text="# Written by entrypoint.sh from $CRON_TEMPLATE at container start: set INGEST_SCHEDULE, not this."
    text+=$'\n'$(grep -v '^#' "$CRON_TEMPLATE")
    text=${text//@INGEST_SCHEDULE@/"$INGEST_SCHEDULE"}
    text=${text//@JOB_USER@/"$JOB_USER"}
    text=${text//@INGEST_ENV_FILE@/"$INGEST_ENV_FILE"}
    text=${text//@INGEST_LOG_OUT@/"$INGEST_LOG_OUT"}
    text=${text//@INGEST_LOG_ERR@/"$INGEST_LOG_ERR"}
    # cron ignores a file that others can write, and a last line without a newline.
    tmp=$(mktemp "$(dirname "$CRON_FILE")/.ingester.XXXXXX")
    printf '%s\n' "$text" >"$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$CRON_FILE"
}

# The state file's directory is a volume that outlives images; a run started as root with
# `docker compose exec` may have left the state file, its lock or a temporary file owned by root.
check_state_dir() {
    [ -n "${STATE_FILE:-}" ] || return 0
    local dir file
    dir=$(dirname "$STATE_FILE")
    ensure_job_dir "$dir"
    if is_root; then
        for file in "$STATE_FILE" "$STATE_FILE".* "$dir/.$(basename "$STATE_FILE")".*; do
            if [ -e "$file" ]; then chown "$JOB_USER:" "$file"; fi
        done
    fi
    as_job_user test -w "$dir" ||
        die "STATE_FILE's directory $dir must be writable by $JOB_USER (chown it, or recreate the volume)"
}

prepare() {
    check_settings
    check_state_dir
    write_env_file
    render_cron_file
}

job_line() {
    # The cron.d line without its five schedule fields and the user field.
    local line
    line=$(grep -v -e '^#' -e '^[A-Z]*=' "$CRON_FILE" | grep -m1 .)
    read -r _ _ _ _ _ _ line <<<"$line"
    printf '%s\n' "$line"
}

# The live processes started below this shell (cron, running jobs), except the log copiers
# and the subshell that runs this function.
descendants() {
    local -A children=()
    local stat line rest pid ppid queue=("$$") found=()
    for stat in /proc/[0-9]*/stat; do
        read -r line 2>/dev/null <"$stat" || continue # the process may be gone by now
        pid=${line%% *}
        rest=${line##*) } # "STATE PPID ..." after "PID (COMMAND) "
        [ "${rest%% *}" = Z ] && continue
        ppid=${rest#* }
        ppid=${ppid%% *}
        children[$ppid]+=" $pid"
    done
    while [ "${#queue[@]}" -gt 0 ]; do
        pid=${queue[0]}
        queue=("${queue[@]:1}")
        for pid in ${children[$pid]:-}; do
            case "$pid" in "$copier_out" | "$copier_err" | "$BASHPID") continue ;; esac
            found+=("$pid")
            queue+=("$pid")
        done
    done
    echo "${found[@]}"
}

stop() {
    trap - TERM INT HUP
    log "stopping"
    kill -TERM "$cron_pid" 2>/dev/null || true
    local pids waited=0
    pids=$(descendants)
    # shellcheck disable=SC2086 # a list of pids
    [ -z "$pids" ] || kill -TERM $pids 2>/dev/null || true
    while [ -n "$(descendants)" ] && [ "$waited" -lt $((STOP_GRACE_SECONDS * 10)) ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    pids=$(descendants)
    # shellcheck disable=SC2086
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
    sleep 0.2 # let the copiers pass on the jobs' last lines
    kill -TERM "$copier_out" "$copier_err" 2>/dev/null || true
    rm -f "$CRON_FILE"
    log "stopped"
    exit 0
}

run() {
    prepare
    # A job user may not open /proc/1/fd/1; it writes to these FIFOs instead, and two copiers
    # that hold them open read-write (so they never see end-of-file) pass it on.
    local fifo
    for fifo in "$INGEST_LOG_OUT" "$INGEST_LOG_ERR"; do
        ensure_job_dir "$(dirname "$fifo")"
        rm -f "$fifo"
        mkfifo -m 0600 "$fifo"
        if is_root; then chown "$JOB_USER:" "$fifo"; fi
    done
    cat 0<>"$INGEST_LOG_OUT" &
    copier_out=$!
    cat 0<>"$INGEST_LOG_ERR" >&2 &
    copier_err=$!
    cron_pid=
    trap stop TERM INT HUP

    local line home
    line=$(job_line)
    home=$(getent passwd "$JOB_USER" | cut -d: -f6)
    if [ "$RUN_ON_START" = true ]; then
        log "running once now (RUN_ON_START=true)"
        # The same line, user and near-empty environment as cron uses.
        as_job_user env -i HOME="$home" LOGNAME="$JOB_USER" SHELL=/bin/sh PATH=/usr/bin:/bin \
            /bin/sh -c "$line" &
    fi

    cron -f &
    cron_pid=$!
    log "cron runs ingest.py as $JOB_USER at \"$INGEST_SCHEDULE\" ($TZ)"
    while kill -0 "$cron_pid" 2>/dev/null; do
        wait "$cron_pid" || true # returns early when a trapped signal arrives
    done
    echo "entrypoint: cron exited unexpectedly" >&2
    kill -TERM "$copier_out" "$copier_err" 2>/dev/null || true
    exit 1
}

case "${1:-run}" in
    run) run ;;
    prepare) prepare ;;
    *) exec "$@" ;;
esac
