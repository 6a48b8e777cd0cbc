#!/bin/sh
# PID 1 after a panic in one of its tasks (tests/vm_panic.rs). corrald runs with
# CORRAL_TEST_PANIC=accept: the private socket's accept loop panics at its next connection.
# Boot 1 first waits for a restart loop to end, which floods the console (the bound on
# console lines); then, on each boot:
# the first connection to the API panics PID 1; the API is gone, the services still run,
# orphans are still reaped; ctrl-alt-del reboots. Boot 2: the same, ended by SIGTERM (power off).
check() { echo "CORRAL-CHECK $*"; }
verdict() {
    name=$1 detail=$2
    shift 2
    if "$@"; then check "$name" PASS "$detail"; else check "$name" FAIL "$detail"; fi
}
fails() { ! "$@" >/dev/null 2>&1; }
ctl=/usr/bin/corralctl

# Which boot: the disk counts them.
marker=$(dd if=/dev/vda bs=16 count=1 2>/dev/null | tr -d '\000')
case $marker in
    corral-boot-[0-9]) boot=$((${marker#corral-boot-} + 1)) ;;
    *) boot=1 ;;
esac
printf 'corral-boot-%s' "$boot" | dd of=/dev/vda bs=16 count=1 conv=notrunc,fsync 2>/dev/null

if [ "$boot" = 1 ]; then
    # flood.service restarts (from boot) until its start limit; its cgroup comes and goes with
    # each cycle. Over once the cgroup has stayed away for two seconds. No API call before
    # that: the first connection makes PID 1 panic. Five seconds, not less: on a loaded TCG host
    # a cycle can take seconds.
    flood=/sys/fs/cgroup/system.slice/flood.service
    away=0
    for _ in $(seq 1 1200); do
        if [ -e $flood ]; then away=0; else away=$((away + 1)); fi
        [ "$away" -ge 50 ] && break
        sleep 0.1
    done
    echo "panic-check: flood over"
    verdict flood-over "its cgroup gone for $away tenths of a second" [ "$away" -ge 50 ]
fi

# Not through the API: its first connection makes PID 1 panic.
sleeper=$(cat /sys/fs/cgroup/system.slice/sleeper.service/cgroup.procs)
verdict sleeper-runs "sleeper.service runs as ${sleeper:-?}" [ "${sleeper:-0}" -gt 0 ]

echo "panic-check: connecting, which panics PID 1's accept loop"
$ctl list >/dev/null 2>&1
sleep 1
verdict api-gone "corralctl list after the panic" fails $ctl list
verdict services-kept "sleeper.service ($sleeper) still runs" kill -0 "$sleeper"

# Orphans: each subshell starts a child and exits, so the child is reparented to PID 1, which
# must reap it when it ends (a zombie keeps its /proc entry).
rm -f /run/orphans
for i in 1 2 3; do
    (/bin/sleep 2 & echo $! >> /run/orphans)
done
sleep 0.5
parents=
for pid in $(cat /run/orphans); do
    read -r _ _ _ ppid _ < /proc/$pid/stat
    parents="$parents $ppid"
done
verdict orphans-reparented "parents:$parents" [ "$parents" = " 1 1 1" ]
left=x
for _ in $(seq 1 40); do
    left=
    for pid in $(cat /run/orphans); do
        [ -e /proc/$pid ] && left="$left $pid"
    done
    [ -z "$left" ] && break
    sleep 0.5
done
verdict orphans-reaped "left:${left:- none}" [ -z "$left" ]

if [ "$boot" = 1 ]; then
    echo "panic-check: boot 1 done, pressing ctrl-alt-del"
    echo ctrl-alt-del > /dev/ttyS1
    # Generous: the key goes through the host's test thread and QEMU's monitor.
    sleep 60
    echo "panic-check: no ctrl-alt-del arrived; sending SIGINT to PID 1"
    kill -INT 1
else
    echo "panic-check: boot $boot done, sending SIGTERM to PID 1"
    kill -TERM 1
fi
