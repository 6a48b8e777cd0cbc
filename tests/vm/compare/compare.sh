#!/bin/sh
# The corral-or-systemd comparison, in the guest (tests/common/compare.rs): runs as the unit
# ordered after the 20 /bin/sleep services, under either PID 1. Reports how long the boot took
# (now, from the kernel's "Run /init" stamp), then PID 1's CPU time over RUNS sequential
# `run --wait /bin/true` calls (/etc/compare/run-one: corralctl run or systemd-run), then exits.
# Prints CORRAL-CHECK lines; the host turns them into figures.

# First, before anything else: the uptime now that every service is up.
read -r ready _ < /proc/uptime

# PID 1's utime + stime, in clock ticks (USER_HZ: 100 on x86), its threads included.
pid1_ticks() { sed 's/.*) //' /proc/1/stat | awk '{ print $12 + $13 }'; }
boot_ticks=$(pid1_ticks)
init=$(dmesg | sed -n 's/^\[ *\([0-9.]*\)\] Run \/init as init process.*/\1/p' | head -n1)
sleeps=0
for c in /proc/[0-9]*/cmdline; do
    case "$(tr '\0' ' ' < "$c" 2>/dev/null)" in
        "/bin/sleep 100000 ") sleeps=$((sleeps + 1)) ;;
    esac
done
echo "CORRAL-CHECK compare-ready PASS init=${init:-?} ready=$ready sleeps=$sleeps pid1_ticks=$boot_ticks"

runs=$(cat /etc/compare/runs)
c0=$(pid1_ticks)
read -r t0 _ < /proc/uptime
i=0 failed=0
while [ "$i" -lt "$runs" ]; do
    /etc/compare/run-one >/dev/null 2>/tmp/run-one.err || { failed=$((failed + 1)); cat /tmp/run-one.err; }
    i=$((i + 1))
done
read -r t1 _ < /proc/uptime
c1=$(pid1_ticks)
echo "CORRAL-CHECK compare-runs PASS runs=$runs failed=$failed pid1_ticks=$((c1 - c0)) from=$t0 to=$t1"
/bin/vm-exit 0
