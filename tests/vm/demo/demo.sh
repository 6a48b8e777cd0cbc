#!/bin/sh
# Runs inside the demo VM as demo.service.
CG=/sys/fs/cgroup
check() { echo "CORRAL-CHECK $*"; }
usage() { awk '$1 == "usage_usec" { print $2 }' "$1/cpu.stat"; }
uptime_us() { awk '{ printf "%d", $1 * 1000000 }' /proc/uptime; }
banner() { echo; echo "=== $* ==="; }

# metrics.service is ready about a second after it starts.
for _ in 1 2 3 4 5 6 7 8 9 10; do
    corralctl status metrics.service | grep -q "active (running)" && break
    sleep 1
done

banner "corralctl list"
corralctl list
banner "corralctl status web.service metrics.service batch-crunch.service"
corralctl status web.service metrics.service batch-crunch.service

banner "limits in the kernel"
for f in apps.slice/memory.max apps.slice/web.service/memory.max apps.slice/apps-batch.slice/cpu.max \
         apps.slice/apps-batch.slice/batch-crunch.service/cpu.max \
         apps.slice/apps-batch.slice/batch-crunch.service/io.max; do
    printf '%-58s %s\n' "$f" "$(cat $CG/$f | tr '\n' ' ')"
done

# batch-crunch asks for 200 % but its slice allows 50 %: measure it.
B=$CG/apps.slice/apps-batch.slice/batch-crunch.service
t0=$(uptime_us); u0=$(usage $B); sleep 4; t1=$(uptime_us); u1=$(usage $B)
pct=$(( (u1 - u0) * 100 / (t1 - t0) ))
echo "batch-crunch.service used ${pct}% of one CPU over $(( (t1 - t0) / 1000 )) ms (own cpu-max 200%, slice 50%)"
if [ "$pct" -le 55 ]; then check slice-cpu-cap PASS "${pct}%"; else check slice-cpu-cap FAIL "${pct}%"; fi

for u in web.service metrics.service batch-crunch.service logrotate.service; do
    if corralctl status $u | grep -q "Active: active"; then check "active-$u" PASS
    else check "active-$u" FAIL "$(corralctl status $u | tr '\n' ' ')"; fi
done
if wget -q -O - http://127.0.0.1:8080/ | grep -q "corral demo"; then check web-serves PASS
else check web-serves FAIL "no answer on :8080"; fi

if grep -q "DEMO_SHELL=1" /proc/1/environ 2>/dev/null; then
    banner "a shell in the guest: try corralctl list; exit (or poweroff via kill -TERM 1) to end"
    setsid sh -c 'exec sh -i </dev/console >/dev/console 2>&1'
fi
kill -TERM 1
