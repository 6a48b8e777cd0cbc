#!/bin/sh
# io-max, asserted in the guest kernel: write rates measured from the cgroups' io.stat (and the
# disks' own counters) over guest uptime. Prints CORRAL-CHECK lines, then powers off.
CG=/sys/fs/cgroup/system.slice
check() { echo "CORRAL-CHECK $*"; }
uptime_us() { awk '{ printf "%d", $1 * 1000000 }' /proc/uptime; }
# Bytes the cgroup $1 wrote to device $2 (MAJ:MIN), from io.stat.
cg_wbytes() { sed -n "s/^$2 .*wbytes=\([0-9]*\).*/\1/p" "$1/io.stat"; }
# Bytes written to disk $1 as the disk counts them (/sys/block/X/stat field 7: sectors).
disk_wbytes() { set -- $(cat "/sys/block/$1/stat"); echo $(($7 * 512)); }
MiB=1048576
rate() { echo "$(($1 / 1024))KiB/s"; }

vda=$(cat /sys/block/vda/dev 2>/dev/null)
vda1=$(cat /sys/block/vda/vda1/dev 2>/dev/null)
echo "io checks: vda=$vda vda1=$vda1"

# ── io.max as the kernel shows it: the disk's number, even for a unit naming the partition ──
want="$vda rbps=max wbps=$((2 * MiB)) riops=max wiops=max"
got=$(cat $CG/throttled.service/io.max 2>&1)
if [ -n "$vda" ] && [ "$got" = "$want" ]; then
    check io-max-file PASS "throttled.service io.max: $got"
else
    check io-max-file FAIL "throttled.service io.max: '$got', want '$want'"
fi
want="$vda rbps=max wbps=$((3 * MiB)) riops=max wiops=max"
got=$(cat $CG/part.service/io.max 2>&1)
if [ -n "$vda1" ] && [ "$vda1" != "$vda" ] && [ "$got" = "$want" ]; then
    check io-max-partition PASS "part.service names /dev/vda1 ($vda1); io.max: $got"
else
    check io-max-partition FAIL "part.service io.max: '$got', want '$want' (vda1 is '$vda1')"
fi

# ── rates over a window, once the writers have run for a moment ──
sleep 1
t0=$(uptime_us)
a0=$(cg_wbytes $CG/throttled.service "$vda")
p0=$(cg_wbytes $CG/part.service "$vda")
c0=$(disk_wbytes vdb)
sleep 4
t1=$(uptime_us)
a1=$(cg_wbytes $CG/throttled.service "$vda")
p1=$(cg_wbytes $CG/part.service "$vda")
c1=$(disk_wbytes vdb)
dt=$((t1 - t0))
echo "io checks: window ${dt}us; throttled $a0..$a1, part $p0..$p1, vdb $c0..$c1 bytes"

# written: bytes over the window, per second.
per_s() { echo $((($2 - $1) * 1000000 / dt)); }
a=$(per_s "${a0:-0}" "${a1:-0}")
p=$(per_s "${p0:-0}" "${p1:-0}")
c=$(per_s "$c0" "$c1")

# At most the limit + 10 %; at least half of it (the writer is held, not stalled).
limit=$((2 * MiB))
if [ "$a" -le $((limit * 110 / 100)) ] && [ "$a" -ge $((limit / 2)) ]; then
    check io-max-wbps PASS "throttled.service wrote $(rate "$a") over ${dt}us (limit 2048KiB/s)"
else
    check io-max-wbps FAIL "throttled.service wrote $(rate "$a") over ${dt}us (limit 2048KiB/s)"
fi
limit=$((3 * MiB))
if [ "$p" -le $((limit * 110 / 100)) ] && [ "$p" -ge $((limit / 2)) ]; then
    check io-max-partition-wbps PASS "part.service wrote $(rate "$p") to /dev/vda1 (limit 3072KiB/s)"
else
    check io-max-partition-wbps FAIL "part.service wrote $(rate "$p") to /dev/vda1 (limit 3072KiB/s)"
fi
# The same writer without a limit: much faster, so the limit is what held the others.
if [ "$c" -ge $((4 * 3 * MiB)) ]; then
    check io-unthrottled PASS "control.service wrote $(rate "$c") to /dev/vdb with no limit"
else
    check io-unthrottled FAIL "control.service wrote $(rate "$c") to /dev/vdb, not ≥ 4 × 3MiB/s"
fi

kill -TERM 1
