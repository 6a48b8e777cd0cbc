#!/bin/sh
# Asserts, in the guest kernel, that every limit holds. Prints CORRAL-CHECK lines.
CG=/sys/fs/cgroup
check() { echo "CORRAL-CHECK $*"; }
usage() { awk '$1 == "usage_usec" { print $2 }' "$1/cpu.stat"; }
field() { awk -v k="$2" '$1 == k { print $2 }' "$1"; }
uptime_us() { awk '{ printf "%d", $1 * 1000000 }' /proc/uptime; }

sleep 2
t0=$(uptime_us)
b0=$(usage $CG/system.slice/busy.service)
l0=$(usage $CG/tight.slice/loose.service)
a0=$(usage $CG/system.slice/w100.service)
c0=$(usage $CG/system.slice/w300.service)
sleep 5
t1=$(uptime_us)
b1=$(usage $CG/system.slice/busy.service)
l1=$(usage $CG/tight.slice/loose.service)
a1=$(usage $CG/system.slice/w100.service)
c1=$(usage $CG/system.slice/w300.service)
dt=$((t1 - t0))

pct=$(( (b1 - b0) * 100 / dt ))
thr=$(field $CG/system.slice/busy.service/cpu.stat nr_throttled)
if [ "$pct" -le 25 ] && [ "$thr" -gt 0 ]; then
    check cpu-max PASS "busy used ${pct}% of a CPU over ${dt}us, nr_throttled=$thr"
else
    check cpu-max FAIL "busy used ${pct}% of a CPU, nr_throttled=$thr, cpu.max=$(cat $CG/system.slice/busy.service/cpu.max)"
fi

pct=$(( (l1 - l0) * 100 / dt ))
thr=$(field $CG/tight.slice/cpu.stat nr_throttled)
if [ "$pct" -le 14 ] && [ "$thr" -gt 0 ]; then
    check nesting PASS "loose.service (80%) in tight.slice (10%) used ${pct}%, slice nr_throttled=$thr"
else
    check nesting FAIL "loose.service used ${pct}%, slice nr_throttled=$thr"
fi

ua=$((a1 - a0)); uc=$((c1 - c0))
if [ "$ua" -gt 0 ]; then ratio=$((uc * 100 / ua)); else ratio=0; fi
if [ "$ratio" -ge 200 ] && [ "$ratio" -le 450 ]; then
    check cpu-weight PASS "w300/w100 = ${ratio}% (w100 ${ua}us, w300 ${uc}us)"
else
    check cpu-weight FAIL "w300/w100 = ${ratio}% (w100 ${ua}us, w300 ${uc}us)"
fi

cur=$(cat $CG/system.slice/forkbomb.service/pids.current)
max=$(field $CG/system.slice/forkbomb.service/pids.events max)
t0=$(uptime_us); i=0; while [ $i -lt 20 ]; do /bin/true; i=$((i + 1)); done; t1=$(uptime_us)
if [ "$cur" -le 32 ] && [ "$max" -gt 0 ] && [ $((t1 - t0)) -lt 5000000 ]; then
    check pids-max PASS "pids.current=$cur, refused forks=$max, 20 execs took $((t1 - t0))us"
else
    check pids-max FAIL "pids.current=$cur, pids.events max=$max, 20 execs took $((t1 - t0))us"
fi

pid=$(head -n1 $CG/system.slice/pinned.service/cgroup.procs)
cpus=$(awk '/^Cpus_allowed_list/ { print $2 }' /proc/$pid/status)
if [ "$cpus" = 1 ]; then check cpuset-cpus PASS "pid $pid: Cpus_allowed_list=$cpus"
else check cpuset-cpus FAIL "pid $pid: Cpus_allowed_list=$cpus"; fi

high=$(field $CG/system.slice/hog-high.service/memory.events high)
cur=$(cat $CG/system.slice/hog-high.service/memory.current)
if [ "$high" -gt 0 ]; then check memory-high PASS "memory.events high=$high, memory.current=$cur"
else check memory-high FAIL "memory.events high=$high, memory.current=$cur"; fi

# hog.service was OOM-killed and stopped (its cgroup is gone); the neighbour still runs.
# Doubling its string up to 64M takes ~10 s under TCG: wait for it (20 s at most).
i=0; while [ -d $CG/system.slice/hog.service ] && [ $i -lt 40 ]; do sleep 0.5; i=$((i + 1)); done
if [ ! -d $CG/system.slice/hog.service ] && [ -n "$(cat $CG/system.slice/idle.service/cgroup.procs)" ]; then
    check memory-max-neighbour PASS "hog.service gone, idle.service still running"
else
    check memory-max-neighbour FAIL "system.slice holds: $(ls $CG/system.slice | tr '\n' ' '), idle: $(cat $CG/system.slice/idle.service/cgroup.procs)"
fi

# Power off: SIGTERM to PID 1 stops every unit and ends the machine.
kill -TERM 1
