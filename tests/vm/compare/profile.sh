#!/bin/sh
# PID 1's profile in the guest (tests/common/compare.rs, `scripts/bench --vm-profile`): the
# corral image of the comparison, with Debian's perf, runs as the unit after the 20 services.
# After 5 warm-up calls, perf samples PID 1 (cpu-clock: the guest has no PMU; DWARF call
# graphs: a release corrald has no frame pointers) over RUNS `run --wait /bin/true` calls, then
# prints PID 1's inclusive profile between PROFILE-BEGIN and PROFILE-END.

echo 0 > /proc/sys/kernel/kptr_restrict
echo -1 > /proc/sys/kernel/perf_event_paranoid
runs=$(cat /etc/compare/runs)
i=0
while [ "$i" -lt 5 ]; do /etc/compare/run-one >/dev/null; i=$((i + 1)); done
/usr/bin/perf record -q -e cpu-clock -F 1000 --call-graph dwarf,32768 -p 1 -o /tmp/perf.data \
    >/dev/null 2>/tmp/perf.err &
perf=$!
sleep 1
i=0 failed=0
while [ "$i" -lt "$runs" ]; do
    /etc/compare/run-one >/dev/null 2>&1 || failed=$((failed + 1))
    i=$((i + 1))
done
kill -INT "$perf"
wait "$perf"
cat /tmp/perf.err
echo "PROFILE-BEGIN"
/usr/bin/perf report -i /tmp/perf.data --stdio --no-inline --children --comms init -g none \
    --sort sym --percent-limit 1 2>&1 | grep -v '^#' | grep -v '^$'
echo "PROFILE-END"
# A profile of failing calls is not a profile of the calls.
[ "$failed" -eq 0 ] && verdict=PASS || verdict=FAIL
echo "CORRAL-CHECK profile $verdict runs=$runs failed=$failed"
/bin/vm-exit 0
