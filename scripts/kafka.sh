#!/usr/bin/env bash
# The Kafka broker for Vigil's tests and local runs: Tansu (a Kafka-protocol broker written in
# Rust) on SQLite storage, so a restart keeps topics and committed offsets.
#
#   scripts/kafka.sh install   build Tansu once into $VIGIL_TANSU_ROOT (kept between runs)
#   scripts/kafka.sh start     install if needed, start on $VIGIL_KAFKA_LISTEN, wait until it answers
#   scripts/kafka.sh stop      stop it (data is kept under $VIGIL_KAFKA_DIR)
#   scripts/kafka.sh status    running or not
#   scripts/kafka.sh reset     stop and delete the broker's data
#
# Every command is idempotent. Never point correctness tests at Tansu's `memory://` storage: it
# miscounts offsets of compressed batches.
set -euo pipefail

ROOT="${VIGIL_TANSU_ROOT:-$HOME/.cache/vigil/tansu}"
TANSU_VERSION="${VIGIL_TANSU_VERSION:-0.6.0}"
DIR="${VIGIL_KAFKA_DIR:-$HOME/.cache/vigil/kafka}"
LISTEN="${VIGIL_KAFKA_LISTEN:-127.0.0.1:9092}"
BIN="$ROOT/bin/tansu"
PIDFILE="$DIR/tansu.pid"
LOG="$DIR/tansu.log"

log() { echo "kafka.sh: $*" >&2; }

answering() {
    # A TCP connect to the listener succeeds.
    local host="${LISTEN%:*}" port="${LISTEN##*:}"
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

running_pid() {
    [[ -f "$PIDFILE" ]] || return 1
    local pid
    pid="$(cat "$PIDFILE")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

install() {
    if [[ -x "$BIN" ]]; then
        return 0
    fi
    if ! command -v cc >/dev/null 2>&1; then
        log "installing a C toolchain (build-essential)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential >/dev/null
    fi
    log "building Tansu $TANSU_VERSION with SQLite storage into $ROOT (once; 15-30 minutes on 2 cores)"
    cargo install tansu --version "$TANSU_VERSION" --locked --features libsql --root "$ROOT"
}

start() {
    install
    mkdir -p "$DIR"
    if running_pid >/dev/null; then
        log "already running (pid $(running_pid)) on $LISTEN"
        return 0
    fi
    if answering; then
        log "something else already listens on $LISTEN"
        return 1
    fi
    log "starting Tansu on $LISTEN (data in $DIR)"
    # setsid: the broker outlives this script and is not hit by the caller's Ctrl-C.
    # Tansu reads the SQLite path relative to its working directory.
    (cd "$DIR" && exec setsid "$BIN" broker \
        --listener-url "tcp://$LISTEN" \
        --advertised-listener-url "tcp://$LISTEN" \
        --storage-engine "sqlite://tansu.db" \
        >>"$LOG" 2>&1 </dev/null) &
    echo $! >"$PIDFILE"
    for _ in $(seq 1 100); do
        if answering; then
            log "ready (pid $(cat "$PIDFILE"))"
            return 0
        fi
        if ! running_pid >/dev/null; then
            log "Tansu exited; the end of $LOG:"
            tail -n 20 "$LOG" >&2
            return 1
        fi
        sleep 0.1
    done
    log "Tansu did not answer on $LISTEN within 10 s"
    return 1
}

stop() {
    local pid
    if pid="$(running_pid)"; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        log "stopped (pid $pid)"
    fi
    rm -f "$PIDFILE"
}

status() {
    if pid="$(running_pid)"; then
        echo "running (pid $pid) on $LISTEN, data in $DIR"
    else
        echo "stopped"
        return 3
    fi
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) status ;;
    reset) stop; rm -rf "$DIR" ;;
    *)
        echo "usage: $0 install|start|stop|status|reset" >&2
        exit 2
        ;;
esac
