#!/bin/sh
# corrald as PID 1 joins the system bus once its unit dbus.service has put the socket in place,
# judges callers by the bus's credentials, and rejoins after the bus restarts. CORRAL-CHECK lines.
export SYSTEMD_COLORS=0 SYSTEMD_PAGER=
check() { echo "CORRAL-CHECK $*"; }
BUSCTL="/usr/bin/busctl --system"
M="org.corral1 /org/corral1 org.corral1.Manager"
U=/org/corral1/unit/idle_2eservice
as_nobody() { /usr/bin/setpriv --reuid 65534 --regid 65534 --clear-groups "$@"; }
# wait_name: until org.corral1 answers on the bus (at most 10 s); prints the Version.
wait_name() {
    for _ in $(seq 50); do
        v=$($BUSCTL get-property $M Version 2>/dev/null) && { echo "$v"; return 0; }
        sleep 0.2
    done
    return 1
}

if v=$(wait_name); then check bus-joined PASS "org.corral1 on the system bus: Version $v"
else check bus-joined FAIL "no org.corral1 on the bus: $($BUSCTL list 2>&1 | head -5)"; fi

job=$($BUSCTL call $M StartUnit s idle.service)
sleep 0.5
state=$($BUSCTL get-property org.corral1 $U org.corral1.Unit ActiveState)
if [ "$state" = 's "active"' ]; then check bus-root-starts PASS "StartUnit through the bus: $job, $state"
else check bus-root-starts FAIL "$job; $state"; fi

read_ok=$(as_nobody $BUSCTL get-property org.corral1 $U org.corral1.Unit ActiveState 2>&1)
denied=$(as_nobody $BUSCTL call $M StopUnit s idle.service 2>&1)
ctl_read=$(as_nobody /usr/bin/corralctl status idle.service 2>&1)
ctl_denied=$(as_nobody /usr/bin/corralctl stop idle.service 2>&1)
if [ "$read_ok" = 's "active"' ] && echo "$denied" | grep -qi "denied" \
    && echo "$ctl_read" | grep -q "Active: active" && echo "$ctl_denied" | grep -q "AccessDenied"; then
    check bus-nobody PASS "uid 65534 reads through the bus, is refused StopUnit; corralctl falls back to the bus"
else
    check bus-nobody FAIL "read: $read_ok; stop: $denied; corralctl status: $ctl_read; corralctl stop: $ctl_denied"
fi

# The bus restarts: corrald takes its name again.
corralctl restart dbus.service
if v=$(wait_name) && [ "$($BUSCTL get-property org.corral1 $U org.corral1.Unit ActiveState)" = 's "active"' ]; then
    check bus-rejoined PASS "org.corral1 back after dbus.service restarted"
else
    check bus-rejoined FAIL "$($BUSCTL list 2>&1 | head -5)"
fi

kill -TERM 1
