#!/bin/sh
# DESIGN §4 in the guest, as an attacker with uid 65534 on the system bus: contents are
# root's (a 0600 drop-in's token, a root service's log and command line past hidepid, a dry
# run that stats paths as root), the user's own service's log is its own; and while it
# floods the bus with the largest GetUnitLog and DiffUnitLimits the bounds allow, root's
# `corralctl list` keeps answering (the figures are printed). CORRAL-CHECK lines.
export SYSTEMD_COLORS=0 SYSTEMD_PAGER=
BUSCTL="/usr/bin/busctl --system"
M="org.corral1 /org/corral1 org.corral1.Manager"
U=/org/corral1/unit/chatty_2eservice
SECRETS="tok-3f9a1c7e|log-secret-4242|argv-secret-7777"

# Flood workers, run as uid 65534 by this script (below) until /tmp/stop-flood exists; each
# counts its calls in /tmp/flood-$1.$$.
case "$1" in
flood-log)
    n=0
    while [ ! -e /tmp/stop-flood ]; do
        $BUSCTL call $M GetUnitLog su mine.service 10000 >/dev/null 2>&1 && n=$((n + 1))
    done
    echo $n > /tmp/flood-log.$$
    exit 0 ;;
hog)
    while [ ! -e /tmp/stop-flood ]; do :; done
    exit 0 ;;
flood-diff)
    # The issue's repro: 20 000 io-max entries in one 200 KB message (refused now).
    nl='
'
    IFS=$nl
    set -- $(seq 2 20001 | sed 's|^|/dev/vda rbps=|')
    IFS=' '
    n=0
    while [ ! -e /tmp/stop-flood ]; do
        $BUSCTL call $M DiffUnitLimits 'sa{sv}' mine.service 1 io-max as 20000 "$@" >/dev/null 2>&1
        n=$((n + 1))
    done
    echo $n > /tmp/flood-diff.$$
    exit 0 ;;
esac

check() { echo "CORRAL-CHECK $*"; }
as_nobody() { /usr/bin/setpriv --reuid 65534 --regid 65534 --clear-groups "$@"; }
# Centiseconds since boot.
now_cs() { read -r up _ < /proc/uptime; echo "${up%.*}${up#*.}"; }
wait_name() {
    for _ in $(seq 50); do
        $BUSCTL get-property $M Version >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    return 1
}
leaks() { echo "$1" | grep -Eq "$SECRETS"; }

wait_name || check bus-up FAIL "no org.corral1 on the bus"
for _ in $(seq 150); do
    corralctl logs mine.service -n 1 2>/dev/null | grep -q nobody-line-19999 && break
    sleep 0.2
done

# The token: not through the bus, not through corralctl, and the file is unreadable.
files=$(as_nobody $BUSCTL call $M GetUnitFiles s chatty.service 2>&1)
cat_out=$(as_nobody /usr/bin/corralctl cat chatty.service 2>&1)
direct=$(as_nobody cat /etc/corral/units/chatty.service.d/10-token.toml 2>&1)
root_files=$($BUSCTL call $M GetUnitFiles s chatty.service 2>&1)
if echo "$files" | grep -qi denied && ! leaks "$files$cat_out$direct" \
    && echo "$root_files" | grep -q tok-3f9a1c7e; then
    check access-files PASS "GetUnitFiles and corralctl cat refused to uid 65534; the 0600 token stays root's"
else
    check access-files FAIL "bus: $files; cat: $cat_out; file: $direct; root: $root_files"
fi

# A root service's log.
log=$(as_nobody $BUSCTL call $M GetUnitLog su chatty.service 100 2>&1)
ctl_log=$(as_nobody /usr/bin/corralctl logs chatty.service 2>&1)
status=$(as_nobody /usr/bin/corralctl status chatty.service 2>&1)
if echo "$log" | grep -qi denied && ! leaks "$log$ctl_log$status" \
    && echo "$status" | grep -q "active (running)"; then
    check access-log PASS "a root service's log is refused to uid 65534; status shows the rest"
else
    check access-log FAIL "bus: $log; logs: $ctl_log; status: $status"
fi

# Processes, past hidepid: uid 65534 sees no process of root's in /proc, nor through corrald.
/bin/mount -o remount,hidepid=2 /proc
seen=$(as_nobody ls /proc | grep -c '^[0-9]')
procs=$(as_nobody $BUSCTL call org.corral1 $U org.corral1.Unit GetProcesses 2>&1)
root_procs=$($BUSCTL call org.corral1 $U org.corral1.Unit GetProcesses 2>&1)
/bin/mount -o remount,hidepid=0 /proc
if echo "$procs" | grep -qi denied && ! leaks "$procs" && echo "$root_procs" | grep -q argv-secret-7777; then
    check access-processes PASS "GetProcesses refused to uid 65534 (it sees $seen pids under hidepid)"
else
    check access-processes FAIL "nobody: $procs; root: $root_procs"
fi

# A dry run that would stat root's paths.
diff=$(as_nobody $BUSCTL call $M DiffUnitLimits 'sa{sv}' chatty.service 1 io-max s "/root/.probe rbps=2M" 2>&1)
if echo "$diff" | grep -qi denied; then
    check access-diff PASS "DiffUnitLimits refused to uid 65534"
else
    check access-diff FAIL "$diff"
fi

# Its own service's log is its own.
own=$(as_nobody $BUSCTL call $M GetUnitLog su mine.service 3 2>&1)
own_ctl=$(as_nobody /usr/bin/corralctl logs mine.service -n 2 2>&1)
if echo "$own" | grep -q nobody-line-19999 && echo "$own_ctl" | grep -q nobody-line-19999; then
    check access-own-log PASS "uid 65534 reads mine.service's log (it runs as nobody)"
else
    check access-own-log FAIL "bus: $own; corralctl: $own_ctl"
fi

# The flood: uid 65534 sends the largest GetUnitLog (10 000 lines of its own log) and the
# issue's 20 000-entry DiffUnitLimits, two loops of each, while root lists 20 times.
lines=$(as_nobody $BUSCTL call $M GetUnitLog su mine.service 10000 | grep -o nobody-line- | wc -l)
list_ms() {
    t0=$(now_cs)
    corralctl list >/dev/null 2>&1 || { echo fail; return; }
    echo $(( ($(now_cs) - t0) * 10 ))
}
# Ten lists each: idle; beside four CPU hogs of uid 65534 (what merely sharing the two vCPUs
# with four busy processes costs); under the flood (two loops of each call).
lists() {
    out=""
    for _ in $(seq 10); do
        out="$out $(list_ms)"
        sleep 0.1
    done
    echo "$out"
}
# "median max" of a list of figures; "fail" if one is.
summary() {
    case "$1" in *fail*) echo fail; return ;; esac
    for t in $1; do echo "$t"; done | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)], a[NR]}'
}
under() {
    rm -f /tmp/stop-flood /tmp/flood-*
    for w in "$@"; do
        as_nobody /bin/sh /checks/access.sh $w &
    done
    sleep 2
    lists
    touch /tmp/stop-flood
    wait
}
idle=$(lists)
hogs=$(under hog hog hog hog)
times=$(under flood-log flood-log flood-diff flood-diff)
log_calls=$(cat /tmp/flood-log.* 2>/dev/null | awk '{s += $1} END {print s + 0}')
diff_calls=$(cat /tmp/flood-diff.* 2>/dev/null | awk '{s += $1} END {print s + 0}')
set -- $(summary "$times")
median=$1 max=$2
figures="root's corralctl list, median and max of 10: idle $(summary "$idle") ms, beside 4 CPU \
hogs $(summary "$hogs") ms, under the flood $median $max ms (each:$times ms); the flood made \
$log_calls GetUnitLog calls of $lines lines and $diff_calls DiffUnitLimits calls of 20000 \
io-max entries"
if [ "$median" != fail ] && [ "$max" -lt 10000 ] && [ "$log_calls" -gt 0 ] && [ "$diff_calls" -gt 0 ]; then
    check flood-root-list PASS "$figures"
else
    check flood-root-list FAIL "$figures"
fi

kill -TERM 1
