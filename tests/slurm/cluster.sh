#!/usr/bin/env bash
# A single-node Slurm cluster on localhost for testing `snakemake --profile slurm`.
#
#   tests/slurm/cluster.sh install   # Debian packages (idempotent; needs root + apt)
#   tests/slurm/cluster.sh up        # start munged, MariaDB, slurmdbd, slurmctld, slurmd; wait until ready
#   tests/slurm/cluster.sh status    # exit 0 when every daemon we started runs and the node takes jobs
#   tests/slurm/cluster.sh env       # prints `export SLURM_CONF=...` (eval it to use the cluster)
#   tests/slurm/cluster.sh down      # cancel jobs, stop exactly the processes `up` started
#
# Everything lives in one state directory (THERMOCG_SLURM_STATE, default /tmp/thermocg-slurm):
# configuration, spool, logs, the database and one pid file per daemon. No system service is
# started. The one thing outside it is a symlink /etc/slurm/slurm.conf -> $STATE/etc/slurm.conf:
# inside a job, the executor plugin's job step drops SLURM_CONF from the environment of its
# `srun`, which then only finds the default path (as on a real cluster). `up` refuses to
# replace a slurm.conf that is not its own link, and `down` removes the link.
#
# The daemons run in the foreground (-D / -F) behind `&`, so `$!` is the daemon's own process
# id; `down` kills those ids and nothing else.
set -Eeuo pipefail

STATE=${THERMOCG_SLURM_STATE:-/tmp/thermocg-slurm}
CLUSTER=thermocg
PARTITION=${THERMOCG_SLURM_LOCAL_PARTITION:-local}
ACCOUNT=thermocg
CTLD_PORT=${THERMOCG_SLURM_CTLD_PORT:-6817}
SLURMD_PORT=${THERMOCG_SLURM_SLURMD_PORT:-6818}
DBD_PORT=${THERMOCG_SLURM_DBD_PORT:-6819}
DB_PORT=${THERMOCG_SLURM_DB_PORT:-13306}
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server mariadb-client)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ME=$(id -un)
# Start order; `down` stops them in reverse.
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

export SLURM_CONF="$STATE/etc/slurm.conf"
SYSTEM_CONF=/etc/slurm/slurm.conf

log() { echo "[slurm-cluster] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# No silent exits under `set -e`: say which command failed.
trap 'die "line $LINENO: \`$BASH_COMMAND\` failed (daemon logs: $STATE/log)"' ERR

# --- install ---------------------------------------------------------------------------------

installed() {
    local pkg
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || return 1
    done
}

cmd_install() {
    if installed; then
        log "packages already installed: ${PACKAGES[*]}"
        return 0
    fi
    command -v apt-get >/dev/null || die "apt-get not found: install ${PACKAGES[*]} by hand"
    [ "$(id -u)" = 0 ] || die "installing packages needs root"
    # Debian's maintainer scripts start services on install (slurmctld, munge, mariadb as
    # system services). We start our own daemons instead, so forbid that with a temporary
    # policy-rc.d (exit 101 = "action not allowed"), and put back any that was there.
    local policy=/usr/sbin/policy-rc.d backup=""
    if [ -e "$policy" ]; then
        backup=$(mktemp)
        cp -p "$policy" "$backup"
    fi
    # shellcheck disable=SC2064  # expand now: restore exactly this backup
    trap "if [ -n '$backup' ]; then cp -p '$backup' '$policy'; rm -f '$backup'; else rm -f '$policy'; fi" EXIT
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
    installed || die "packages still missing after apt-get install"
    log "installed: ${PACKAGES[*]}"
}

# --- helpers ---------------------------------------------------------------------------------

pidfile() { echo "$STATE/pids/$1.pid"; }

# True when the pid recorded for daemon $1 is alive and still that program (not a reused pid).
alive() {
    local f pid
    f=$(pidfile "$1")
    [ -s "$f" ] || return 1
    pid=$(cat "$f")
    [ -d "/proc/$pid" ] || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]
}

# Start daemon $1 (a command in the foreground) in the background; record its pid.
start() {
    local name=$1
    shift
    "$@" </dev/null >>"$STATE/log/$name.out" 2>&1 &
    echo $! >"$(pidfile "$name")"
    log "started $name (pid $!)"
}

# Wait up to $1 seconds for the command after it to succeed.
wait_for() {
    local timeout=$1 t0=$SECONDS
    shift
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS - t0 >= timeout)); then
            return 1
        fi
        sleep 0.5
    done
}

# Fill a template's @NAME@ placeholders.
render() {
    sed -e "s|@STATE@|$STATE|g" -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@USER@|$ME|g" \
        -e "s|@PARTITION@|$PARTITION|g" -e "s|@CPUS@|$CPUS|g" -e "s|@MEM_MB@|$MEM_MB|g" \
        -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" \
        -e "s|@DBD_PORT@|$DBD_PORT|g" -e "s|@DB_PORT@|$DB_PORT|g" -e "s|@DB_PASS@|$DB_PASS|g" "$1"
}

# Add the cluster, an account and us as its user to slurmdbd; true once the association
# exists. Safe to repeat (sacctmgr exits 1 for "already exists", hence the `|| true`).
register() {
    sacctmgr -i add cluster "$CLUSTER" || true
    sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description=thermocg-tests organization=thermocg || true
    sacctmgr -i add user "$ME" account="$ACCOUNT" cluster="$CLUSTER" defaultaccount="$ACCOUNT" || true
    sacctmgr -n -P list assoc cluster="$CLUSTER" account="$ACCOUNT" user="$ME" format=user | grep -qx "$ME"
}

sql() { mariadb --no-defaults --socket="$STATE/mysql.sock" -u root "$@"; }

# True when /etc/slurm/slurm.conf is the link that `up` made.
our_link() { [ -L "$SYSTEM_CONF" ] && [ "$(readlink "$SYSTEM_CONF")" = "$SLURM_CONF" ]; }

node_ready() {
    local state
    state=$(sinfo -h -n localhost -o %T 2>/dev/null) || return 1
    [ "$state" = idle ] || [ "$state" = mixed ] || [ "$state" = allocated ]
}

# --- up / status / down ----------------------------------------------------------------------

cmd_up() {
    local d
    if cmd_status >/dev/null 2>&1; then
        log "already up (state in $STATE)"
        return 0
    fi
    for d in "${DAEMONS[@]}"; do
        if alive "$d"; then
            die "$d from an earlier 'up' still runs but the cluster is not ready; run '$0 down' first"
        fi
    done
    command -v slurmctld >/dev/null || die "Slurm is not installed (run: $0 install)"
    if [ -e "$SYSTEM_CONF" ] && ! our_link; then
        die "$SYSTEM_CONF exists and is not this script's link: a Slurm is configured here already"
    fi

    # A fresh state directory each time: no old jobs, database or node state. Only a directory
    # that this script made (it holds the marker file) is ever wiped.
    if [ -n "$(ls -A "$STATE" 2>/dev/null)" ] && [ ! -e "$STATE/.thermocg-slurm" ]; then
        die "$STATE is not empty and was not made by this script; set THERMOCG_SLURM_STATE elsewhere"
    fi
    rm -rf "$STATE"
    mkdir -p "$STATE"/{etc,log,run,pids,spool/slurmctld,spool/slurmd,munge,mysql}
    touch "$STATE/.thermocg-slurm"
    chmod 700 "$STATE/munge"

    # Node size: at least 8 CPUs (config_overrides lets a 2-core machine run 4-thread rules,
    # oversubscribed), memory 80% of the machine's so slurmd never sees a node larger than it is.
    CPUS=$(nproc)
    if ((CPUS < 8)); then CPUS=8; fi
    MEM_MB=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)
    DB_PASS=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
    render "$HERE/slurm.conf.in" >"$STATE/etc/slurm.conf"
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    ln -sfn "$SLURM_CONF" "$SYSTEM_CONF"
    render "$HERE/slurmdbd.conf.in" >"$STATE/etc/slurmdbd.conf"
    chmod 600 "$STATE/etc/slurmdbd.conf"

    # munge: our own key and socket.
    head -c 1024 /dev/urandom >"$STATE/munge/munge.key"
    chmod 400 "$STATE/munge/munge.key"
    start munged munged -F --force --key-file="$STATE/munge/munge.key" \
        --socket="$STATE/munge/munge.socket" --pid-file="$STATE/run/munged.pid" \
        --log-file="$STATE/log/munged.log" --seed-file="$STATE/munge/munged.seed"
    wait_for 15 munge --socket="$STATE/munge/munge.socket" -n ||
        die "munged did not come up; see $STATE/log/munged.log"

    # MariaDB for slurmdbd: a private data directory, loopback TCP on DB_PORT.
    mariadb-install-db --no-defaults --datadir="$STATE/mysql" --user="$ME" \
        --auth-root-authentication-method=socket --skip-test-db >"$STATE/log/mariadb-install.log" 2>&1 ||
        die "mariadb-install-db failed; see $STATE/log/mariadb-install.log"
    start mariadbd mariadbd --no-defaults --datadir="$STATE/mysql" --user="$ME" \
        --socket="$STATE/mysql.sock" --port="$DB_PORT" --bind-address=127.0.0.1 \
        --pid-file="$STATE/run/mariadbd.pid" --log-error="$STATE/log/mariadbd.log" \
        --innodb-lock-wait-timeout=900
    wait_for 60 sql -e "SELECT 1" || die "MariaDB did not come up; see $STATE/log/mariadbd.log"
    sql <<EOF
CREATE DATABASE slurm_acct_db;
CREATE USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF

    # slurmdbd, then the cluster, an account and us as its user (what sacct and the
    # executor plugin's account lookup see on a real cluster).
    start slurmdbd slurmdbd -D
    wait_for 60 sacctmgr -n list cluster || die "slurmdbd did not come up; see $STATE/log/slurmdbd.log"
    wait_for 30 register || die "could not register cluster/account/user with sacctmgr; see $STATE/log/slurmdbd.log"

    start slurmctld slurmctld -D
    wait_for 30 scontrol ping || die "slurmctld did not come up; see $STATE/log/slurmctld.log"
    start slurmd slurmd -D -N localhost
    wait_for 60 node_ready || die "the node did not become idle; see $STATE/log/slurmd.log and slurmctld.log"
    # sacct must answer too: the executor plugin polls job states with it.
    wait_for 30 sacct -n -X -S now || die "sacct does not answer; see $STATE/log/slurmdbd.log"
    log "up: cluster '$CLUSTER', partition '$PARTITION', account '$ACCOUNT', $CPUS CPUs, $MEM_MB MB"
    log "use it with: export SLURM_CONF=$SLURM_CONF"
}

cmd_status() {
    local d ok=0
    for d in "${DAEMONS[@]}"; do
        if alive "$d"; then
            echo "$d: running (pid $(cat "$(pidfile "$d")"))"
        else
            echo "$d: not running"
            ok=1
        fi
    done
    if [ $ok = 0 ] && node_ready && sacct -n -X -S now >/dev/null 2>&1; then
        echo "cluster: ready (SLURM_CONF=$SLURM_CONF)"
    else
        echo "cluster: not ready"
        ok=1
    fi
    return $ok
}

# Stop daemon $1 by its recorded pid: SIGTERM, then SIGKILL after 15 s.
stop() {
    local name=$1 pid i
    if alive "$name"; then
        pid=$(cat "$(pidfile "$name")")
        kill "$pid" 2>/dev/null || true
        for i in $(seq 30); do
            alive "$name" || break
            sleep 0.5
        done
        if alive "$name"; then
            log "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
            kill -9 "$pid" 2>/dev/null || true
        fi
        log "stopped $name (pid $pid)"
    fi
    rm -f "$(pidfile "$name")"
}

cmd_down() {
    local i
    [ -d "$STATE/pids" ] || { log "nothing to stop (no $STATE/pids)"; return 0; }
    # Cancel what still runs, so slurmd's job steps end with their jobs.
    if alive slurmctld; then
        scancel --user="$ME" 2>/dev/null || true
        for i in $(seq 20); do
            [ -z "$(squeue -h -t running,completing 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        stop "${DAEMONS[i]}"
    done
    if our_link; then rm -f "$SYSTEM_CONF"; fi
    log "down (state and logs kept in $STATE)"
}

case "${1:-}" in
install) cmd_install ;;
up) cmd_up ;;
status) cmd_status || exit 1 ;;
down) cmd_down ;;
env) echo "export SLURM_CONF=$SLURM_CONF" ;;
*)
    echo "usage: $0 install|up|status|env|down" >&2
    exit 2
    ;;
esac
