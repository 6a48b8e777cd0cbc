#!/bin/sh
# corrald under systemd 252 with Delegate=yes (packaging/corrald.service): readiness, the
# delegated tree, a limit held, reload, a crash and its recovery, stop, start, daemon-reexec.
# Prints CORRAL-CHECK lines.
export SYSTEMD_COLORS=0 SYSTEMD_PAGER=
CG=/sys/fs/cgroup
U=$CG/system.slice/corrald.service
check() { echo "CORRAL-CHECK $*"; }
uptime_us() { awk '{ printf "%d", $1 * 1000000 }' /proc/uptime; }
mainpid() { corralctl --json status "$1" | sed -n 's/.*"MainPID":\([0-9]*\).*/\1/p'; }
sd_mainpid() { /usr/bin/systemctl show -P MainPID corrald.service; }

# Type=notify: this unit is ordered after corrald, so corrald said READY=1 before we run.
state=$(/usr/bin/systemctl is-active corrald.service)
if [ "$state" = active ] && corralctl list >/dev/null; then
    check notify-ready PASS "systemd: corrald.service $state; the API answers"
else
    check notify-ready FAIL "corrald.service is $state"
fi

for _ in $(seq 50); do [ -n "$(mainpid hog.service)" ] && [ "$(mainpid hog.service)" != 0 ] && break; sleep 0.2; done
daemon=$(sd_mainpid)
HOG=$U/capped.slice/hog.service
if grep -qx "$daemon" $U/init.scope/cgroup.procs && [ -n "$(cat $HOG/cgroup.procs)" ] \
    && grep -q cpu $U/cgroup.subtree_control && [ -z "$(cat $U/cgroup.procs)" ]; then
    check delegated-tree PASS "corrald ($daemon) in corrald.service/init.scope; hog in $(echo $HOG | sed "s|$CG||"); controllers: $(cat $U/cgroup.subtree_control)"
else
    check delegated-tree FAIL "daemon $daemon; $(find $U -name cgroup.procs -exec sh -c 'echo {}: $(cat {})' \;)"
fi

t0=$(uptime_us); u0=$(awk '/usage_usec/ {print $2}' $HOG/cpu.stat); sleep 3
t1=$(uptime_us); u1=$(awk '/usage_usec/ {print $2}' $HOG/cpu.stat)
pct=$(( (u1 - u0) * 100 / (t1 - t0) ))
if [ "$pct" -le 25 ]; then check limit-holds PASS "hog at ${pct}% under a 20% slice"
else check limit-holds FAIL "hog at ${pct}% under a 20% slice"; fi

if /usr/bin/systemctl reload corrald.service; then check systemctl-reload PASS
else check systemctl-reload FAIL "$(/usr/bin/systemctl status corrald.service 2>&1 | tail -5)"; fi

# A crash. systemd restarts corrald.service (Restart=on-failure) — which systemd 252 can't
# while services run below it (EBUSY, 219/CGROUP) — and when the restarts fail,
# corrald-recover.service takes over the tree. Either way the services are adopted.
hog=$(mainpid hog.service); idle=$(mainpid idle.service)
kill -KILL $daemon
new=
for _ in $(seq 80); do
    new=$(cat $U/init.scope/cgroup.procs 2>/dev/null)
    [ -n "$new" ] && [ "$new" != "$daemon" ] && [ "$(mainpid hog.service)" = "$hog" ] && break
    sleep 0.25
done
by=$(for u in corrald corrald-recover; do [ "$(/usr/bin/systemctl is-active $u.service)" = active ] && echo $u.service; done)
if [ "$(mainpid hog.service)" = "$hog" ] && [ "$(mainpid idle.service)" = "$idle" ] \
    && [ -n "$new" ] && [ "$new" != "$daemon" ] && [ -n "$by" ]; then
    check crash-adopts PASS "corrald $daemon killed; $new (of $by) adopted hog $hog and idle $idle"
else
    check crash-adopts FAIL "corrald $daemon -> '$new' ($by); hog $hog -> $(mainpid hog.service); $(/usr/bin/systemctl status corrald.service corrald-recover.service 2>&1 | tail -6 | tr '\n' ' ')"
fi
t0=$(uptime_us); u0=$(awk '/usage_usec/ {print $2}' $HOG/cpu.stat); sleep 2
t1=$(uptime_us); u1=$(awk '/usage_usec/ {print $2}' $HOG/cpu.stat)
pct=$(( (u1 - u0) * 100 / (t1 - t0) ))
if [ "$pct" -le 25 ] && corralctl limit capped.slice cpu-max=10% --runtime; then
    check adopted-limits PASS "hog at ${pct}% after adoption; the slice's limit is still ours to change"
else
    check adopted-limits FAIL "hog at ${pct}%"
fi

# Stopping corrald.service stops whichever corrald runs the tree (PropagatesStopTo=).
/usr/bin/systemctl stop corrald.service
for _ in $(seq 50); do [ -z "$(find $U -name cgroup.procs -exec cat {} + 2>/dev/null)" ] && break; sleep 0.2; done
left=$(find $U -name cgroup.procs -exec cat {} + 2>/dev/null)
if [ -z "$left" ] && [ ! -d $HOG ]; then check systemctl-stop PASS "every unit stopped, no process left in the tree"
else check systemctl-stop FAIL "left: $left; $(find $U -type d)"; fi

# A clean tree starts again, and daemon-reexec (the upgrade path) keeps the same main PID.
/usr/bin/systemctl reset-failed corrald.service
/usr/bin/systemctl start corrald.service
for _ in $(seq 50); do [ -n "$(mainpid hog.service)" ] && [ "$(mainpid hog.service)" != 0 ] && break; sleep 0.2; done
main=$(sd_mainpid); hog=$(mainpid hog.service)
corralctl daemon-reexec
if [ "$(/usr/bin/systemctl is-active corrald.service)" = active ] && [ "$(sd_mainpid)" = "$main" ] \
    && [ -n "$hog" ] && [ "$(mainpid hog.service)" = "$hog" ]; then
    check start-and-reexec PASS "corrald.service started again ($main); after daemon-reexec the same PID and hog $hog"
else
    check start-and-reexec FAIL "main $main -> $(sd_mainpid) ($(/usr/bin/systemctl is-active corrald.service)); hog $hog -> $(mainpid hog.service)"
fi
/usr/bin/systemctl stop corrald.service

/bin/vm-exit 0
