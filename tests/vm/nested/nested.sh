#!/bin/sh
# The nested corrald's tree, limits, crash and re-adoption, measured in the guest kernel.
CG=/sys/fs/cgroup
N=$CG/system.slice/nested.service
check() { echo "CORRAL-CHECK $*"; }
uptime_us() { awk '{ printf "%d", $1 * 1000000 }' /proc/uptime; }
inner() { corralctl --address unix:path=/run/inner/private "$@"; }
mainpid() { inner --json status "$1" | sed -n 's/.*"MainPID":\([0-9]*\).*/\1/p'; }

for _ in $(seq 50); do [ -n "$(mainpid hog.service)" ] && [ "$(mainpid hog.service)" != 0 ] && break; sleep 0.2; done
HOG=$N/capped.slice/hog.service
if [ -d $HOG ] && [ -n "$(cat $HOG/cgroup.procs)" ] && grep -q cpu $N/cgroup.subtree_control; then
    check nested-tree PASS "hog runs in $(echo $HOG | sed "s|$CG||"); delegated controllers: $(cat $N/cgroup.subtree_control)"
else
    check nested-tree FAIL "$(find $N -name cgroup.procs)"
fi
t0=$(uptime_us); u0=$(awk '/usage_usec/ {print $2}' $HOG/cpu.stat); sleep 3
t1=$(uptime_us); u1=$(awk '/usage_usec/ {print $2}' $HOG/cpu.stat)
pct=$(( (u1 - u0) * 100 / (t1 - t0) ))
thr=$(awk '/nr_throttled/ {print $2}' $N/capped.slice/cpu.stat)
if [ "$pct" -le 25 ] && [ "$thr" -gt 0 ]; then check nested-limit PASS "hog ${pct}% under the nested 20% slice"
else check nested-limit FAIL "hog ${pct}%, nr_throttled=$thr"; fi

hog=$(mainpid hog.service); idle=$(mainpid idle.service)
daemon=$(cat $N/init.scope/cgroup.procs)
kill -KILL $daemon
# The outer corral restarts the nested daemon (restart = on-failure), which adopts.
for _ in $(seq 50); do
    new=$(cat $N/init.scope/cgroup.procs 2>/dev/null)
    [ -n "$new" ] && [ "$new" != "$daemon" ] && [ -S /run/inner/private ] && [ "$(mainpid hog.service)" = "$hog" ] && break
    sleep 0.2
done
if [ "$(mainpid hog.service)" = "$hog" ] && [ "$(mainpid idle.service)" = "$idle" ] \
    && [ "$(wc -l < $HOG/cgroup.procs)" = 1 ] && [ "$new" != "$daemon" ]; then
    check nested-readopt PASS "daemon $daemon killed, $new adopted hog $hog and idle $idle"
else
    check nested-readopt FAIL "hog $(mainpid hog.service) (was $hog), idle $(mainpid idle.service) (was $idle), daemon $new"
fi

inner limit capped.slice cpu-max=10%
t0=$(uptime_us); u0=$(awk '/usage_usec/ {print $2}' $HOG/cpu.stat); sleep 3
t1=$(uptime_us); u1=$(awk '/usage_usec/ {print $2}' $HOG/cpu.stat)
pct=$(( (u1 - u0) * 100 / (t1 - t0) ))
if [ "$pct" -le 14 ]; then check nested-limit-after PASS "hog ${pct}% after limit 10% on the adopted tree"
else check nested-limit-after FAIL "hog ${pct}%"; fi
inner stop hog.service
if [ ! -d $HOG ] && ! kill -0 $hog 2>/dev/null; then check nested-stop PASS
else check nested-stop FAIL "$(ls $N/capped.slice)"; fi

corralctl stop nested.service
if [ ! -d $N ] && ! kill -0 $idle 2>/dev/null; then check nothing-leaks PASS "no nested cgroup, no process left"
else check nothing-leaks FAIL "$(find $N -name cgroup.procs -exec cat {} +)"; fi
kill -TERM 1
