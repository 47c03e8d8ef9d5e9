#!/usr/bin/env bash
# Stops the LocalStack that start.sh started, by the PID it recorded, and its child processes
# (the DynamoDB Local JVM) by their PIDs. Never by name. Idempotent.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if ! pid="$(localstack_pid)"; then
    echo "stop: LocalStack is not running (no live pid in $LOCALSTACK_PIDFILE)"
    rm -f "$LOCALSTACK_PIDFILE"
    exit 0
fi
# Its descendants (the DynamoDB Local JVM runs in a process group of its own), by PID, taken
# before LocalStack is asked to exit so that none is left behind if it dies first.
descendants() {
    local p kids
    kids="$(ps -o pid= --ppid "$1" 2>/dev/null || true)"
    for p in $kids; do echo "$p"; descendants "$p"; done
}
# A process is identified by PID and start time, so a PID reused meanwhile is never signalled.
starttime() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null; }
procs=""
for p in $pid $(descendants "$pid"); do procs="$procs $p:$(starttime "$p")"; done
ours() { [ -n "${1#*:}" ] && [ "$(starttime "${1%%:*}")" = "${1#*:}" ]; }
kill -TERM "$pid" 2>/dev/null || true     # LocalStack shuts its services (and the JVM) down itself
alive() { local x; for x in $procs; do ours "$x" && return 0; done; return 1; }
# Shutdown normally takes 2-6 s; now and then it hangs in "Stopping all services" (seen right after
# a stack deletion). The state is throw-away (PERSISTENCE=0), so after the grace period: KILL.
grace="${LOCALSTACK_STOP_TIMEOUT:-15}"
for _ in $(seq 1 $((grace * 2))); do
    alive || break
    sleep 0.5
done
for x in $procs; do
    if ours "$x"; then
        echo "stop: pid ${x%%:*} still alive after ${grace}s, sending KILL"
        kill -KILL "${x%%:*}" 2>/dev/null || true
    fi
done
rm -f "$LOCALSTACK_PIDFILE"
echo "stop: LocalStack (pid $pid) stopped"
