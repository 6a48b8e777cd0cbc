#!/bin/sh
# Live control, measured in the guest kernel. Prints CORRAL-CHECK lines, then powers off.
export SYSTEMD_COLORS=0
CG=/sys/fs/cgroup
check() { echo "CORRAL-CHECK $*"; }
usage() { awk '$1 == "usage_usec" { print $2 }' "$CG/system.slice/$1/cpu.stat"; }
uptime_us() { awk '{ printf "%d", $1 * 1000000 }' /proc/uptime; }
# cpu_pct UNIT SECONDS: the unit's CPU use over that many seconds, in % of one CPU.
cpu_pct() {
    t0=$(uptime_us); u0=$(usage $1); sleep $2; t1=$(uptime_us); u1=$(usage $1)
    echo $(( (u1 - u0) * 100 / (t1 - t0) ))
}
BUSCTL="/usr/bin/busctl --address=unix:path=/run/corral/private"

before=$(cpu_pct hog.service 3)
$BUSCTL call org.corral1 /org/corral1 org.corral1.Manager SetUnitLimits 'sa{sv}b' hog.service 1 cpu-max s 10% true
after=$(cpu_pct hog.service 3)
max=$(cat $CG/system.slice/hog.service/cpu.max)
if [ "$before" -ge 35 ] && [ "$after" -le 15 ]; then
    check set-limits-live PASS "cpu ${before}% at 50%, ${after}% after SetUnitLimits cpu-max=10% (cpu.max: $max)"
else
    check set-limits-live FAIL "cpu ${before}% before, ${after}% after (cpu.max: $max)"
fi
if [ -f /run/corral/units/hog.service.d/50-runtime-limits.toml ]; then check runtime-dropin PASS
else check runtime-dropin FAIL "no /run/corral/units/hog.service.d/50-runtime-limits.toml"; fi

corralctl freeze hog.service
frozen=$(cpu_pct hog.service 2)
state=$(awk '$1 == "frozen" { print $2 }' $CG/system.slice/hog.service/cgroup.events)
corralctl thaw hog.service
thawed=$(cpu_pct hog.service 2)
if [ "$frozen" -le 1 ] && [ "$state" = 1 ] && [ "$thawed" -ge 5 ]; then
    check freeze-thaw PASS "frozen: ${frozen}%, thawed: ${thawed}%"
else
    check freeze-thaw FAIL "frozen: ${frozen}% (frozen=$state), thawed: ${thawed}%"
fi

s=$(corralctl status crashy.service)
if echo "$s" | grep -q "Active: failed" && echo "$s" | grep -q "Result: start-limit-hit" && echo "$s" | grep -q "Restarts: 2"; then
    check restart-start-limit PASS "3 starts, then start-limit-hit"
else
    check restart-start-limit FAIL "$(echo "$s" | tr '\n' ' ')"
fi

t0=$(uptime_us); corralctl stop stubborn.service; t1=$(uptime_us)
ms=$(( (t1 - t0) / 1000 ))
# It waits out the stop timeout before the kill; the upper bound only catches a stop that never
# kills (a loaded TCG guest takes seconds longer than 2 s, so it is loose on purpose).
if [ "$ms" -ge 1800 ] && [ "$ms" -le 20000 ] && [ ! -d $CG/system.slice/stubborn.service ]; then
    check stop-timeout-kill PASS "SIGTERM ignored; cgroup.kill after ${ms} ms (stop-timeout 2s)"
else
    check stop-timeout-kill FAIL "stop took ${ms} ms; dir: $(ls $CG/system.slice)"
fi

zombies=$(grep -l '^State:.Z' /proc/[0-9]*/status 2>/dev/null | wc -l)
if [ "$zombies" = 0 ]; then check zombies-reaped PASS
else check zombies-reaped FAIL "$zombies zombies: $(grep -l '^State:.Z' /proc/[0-9]*/status)"; fi

eff=$(corralctl --json status loose.service)
if echo "$eff" | grep -q '"cpu-max":\["10%","tight.slice"\]'; then
    check effective-binding PASS "loose.service (80%) is held by tight.slice (10%)"
else
    check effective-binding FAIL "$eff"
fi

# Reexec as PID 1: the same services (same PIDs), their limits still held, the API back.
pid() { corralctl --json status $1 | sed -n 's/.*"MainPID":\([0-9]*\).*/\1/p'; }
hog_before=$(pid hog.service)
if corralctl daemon-reexec; then
    hog_after=$(pid hog.service)
    cpu=$(cpu_pct hog.service 2)
    if [ -n "$hog_before" ] && [ "$hog_before" = "$hog_after" ] && [ "$cpu" -le 15 ] \
        && corralctl status hog.service | grep -q "Active: active (running)"; then
        check reexec-pid1 PASS "hog.service kept PID $hog_after and its 10% limit (${cpu}%)"
    else
        check reexec-pid1 FAIL "hog PID $hog_before -> $hog_after, cpu ${cpu}%"
    fi
else
    check reexec-pid1 FAIL "corralctl daemon-reexec failed"
fi

kill -TERM 1
