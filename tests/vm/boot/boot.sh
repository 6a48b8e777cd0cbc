#!/bin/sh
# PID 1 duties, asserted in the guest kernel once every other autostart unit is active.
# Prints CORRAL-CHECK lines; runs on each of the three boots (finish.sh ends them).

# First, before anything else: how long the kernel has been up now that the units are ready.
read -r ready _ < /proc/uptime

check() { echo "CORRAL-CHECK $*"; }
# verdict NAME DETAIL COMMAND…: PASS when COMMAND succeeds.
verdict() {
    name=$1 detail=$2
    shift 2
    if "$@"; then check "$name" PASS "$detail"; else check "$name" FAIL "$detail"; fi
}
is() { [ "$1" = "$2" ]; }

# Which boot: finish.sh counts the boots done at the start of /dev/vda.
marker=$(dd if=/dev/vda bs=16 count=1 2>/dev/null | tr -d '\000')
case $marker in
    corral-boot-[0-9]) boot=$((${marker#corral-boot-} + 1)) ;;
    *) boot=1 ;;
esac
# The kernel's part: when it ran /init (corrald), from the kernel log (quiet keeps it off the
# console, not out of the ring buffer).
init=$(dmesg | sed -n 's/^\[ *\([0-9.]*\)\] Run \/init as init process.*/\1/p' | head -n1)
check boot-to-ready PASS "boot=$boot uptime=${ready}s (kernel ran /init at ${init:-?}s)"

# ── early mounts ──
missing=
for m in /proc:proc /sys:sysfs /dev:devtmpfs /dev/pts:devpts /dev/shm:tmpfs /run:tmpfs \
    /sys/fs/cgroup:cgroup2; do
    dir=${m%%:*} type=${m#*:}
    awk -v d="$dir" -v t="$type" '$2 == d && $3 == t { f = 1 } END { exit !f }' /proc/mounts ||
        missing="$missing $dir($type)"
done
verdict mounts "missing:${missing:- none}" is "$missing" ""

opts=$(awk '$2 == "/sys/fs/cgroup" && $3 == "cgroup2" { print $4 }' /proc/mounts)
case ",$opts," in
    *,nsdelegate,*memory_recursiveprot,* | *,memory_recursiveprot,*nsdelegate,*) ok=0 ;;
    *) ok=1 ;;
esac
verdict cgroup2-options "cgroup2 on /sys/fs/cgroup: $opts" is "$ok" 0

# ── corralctl doctor: no daemon needed; here corrald is PID 1 on a unified cgroup2 tree ──
doctor_ok() {
    printf '%s\n' "$doctor" | grep -qx 'ok    layout: unified: cgroup2 at /sys/fs/cgroup' &&
        printf '%s\n' "$doctor" | grep -q '^ok    tree: corrald is PID 1' &&
        [ "$doctor_rc" = 0 ]
}
doctor=$(/usr/bin/corralctl doctor 2>&1)
doctor_rc=$?
verdict doctor "exit $doctor_rc; $(printf '%s\n' "$doctor" | grep -v '^ok' | tr '\n' '|')" doctor_ok

# ── hostname from /etc/hostname (which starts with a comment and a blank line) ──
want=corral-boot-test
got=$(cat /proc/sys/kernel/hostname)
verdict hostname "kernel.hostname=$got uname -n=$(uname -n) want $want" is "$got" "$want"

# ── sysctl precedence ──
sysctl_is() { # KEY WANT: compares /proc/sys, records a mismatch in $bad
    v=$(cat "/proc/sys/$(echo "$1" | tr . /)" 2>&1)
    shown="${shown:+$shown }$1=$v"
    [ "$v" = "$2" ] || bad="$bad $1=$v(want $2)"
}
bad= shown=
# /etc/sysctl.d/50-tune.conf masks /usr/lib/sysctl.d/50-tune.conf: the whole file, not only
# the keys both set (vm.dirty_background_ratio stays at the kernel's 10).
sysctl_is vm.swappiness 22
sysctl_is vm.dirty_background_ratio 10
verdict sysctl-masking "${bad:-$shown}" is "$bad" ""
bad= shown=
# Lexical order of file names across directories: /usr/lib/…/90-late.conf after
# /etc/…/20-early.conf; and `/` as the separator.
sysctl_is vm.dirty_ratio 33
sysctl_is vm.overcommit_ratio 77
verdict sysctl-order "${bad:-$shown}" is "$bad" ""
bad= shown=
# /etc/sysctl.conf after every sysctl.d file.
sysctl_is kernel.domainname from-sysctl-conf
verdict sysctl-conf-last "${bad:-$shown}" is "$bad" ""
bad= shown=
# A key that only exists once a module from modules-load.d is loaded (the classic
# br_netfilter recipe): modules must load before sysctls apply. The kernel's default is 1.
sysctl_is net.bridge.bridge-nf-call-arptables 0
verdict sysctl-after-modules "${bad:-$shown}" is "$bad" ""

# ── modules-load.d ──
bad=
for m in virtio_pci virtio_blk loop br_netfilter; do
    [ -d "/sys/module/$m" ] && grep -q "^$m " /proc/modules || bad="$bad $m"
done
[ -b /dev/vda ] || bad="$bad /dev/vda"
# brd is listed only in /usr/lib/modules-load.d/disk.conf, which /etc's disk.conf masks.
[ -d /sys/module/brd ] && bad="$bad brd(masked,loaded)"
verdict modules-load "${bad:-loaded: $(awk '{ printf "%s ", $1 }' /proc/modules)}; brd not loaded" \
    is "$bad" ""

# ── autostart units: active and ran, in dependency order ──
bad=
for u in sleeper orphans; do
    [ -n "$(cat /sys/fs/cgroup/system.slice/$u.service/cgroup.procs 2>/dev/null)" ] ||
        bad="$bad $u.service(no process)"
done
order=$(cat /run/order 2>/dev/null | tr '\n' ' ')
[ "$order" = "first second " ] || bad="$bad order=[$order]"
verdict units-ran "${bad:-sleeper and orphans running; /run/order=[$order]}" is "$bad" ""

# ── orphans are reaped ──
# orphans.sh's children record "pid ppid" 0.5 s after it started, then exit as orphans of PID 1.
i=0 zombies=x orphans= reaped=
while [ $i -lt 30 ]; do
    orphans=$(cat /run/orphans 2>/dev/null | tr '\n' ' ')
    zombies=$(grep -l '^State:[[:space:]]*Z' /proc/[0-9]*/status 2>/dev/null |
        while read -r f; do d=${f%/status}; echo "${d#/proc/}($(cat "$d/comm"))"; done | tr '\n' ' ')
    # Each orphan: reparented to 1, and gone (a zombie would still have /proc/PID).
    reaped=0
    set -- $orphans
    while [ $# -ge 2 ]; do
        [ "$2" = 1 ] && [ ! -e "/proc/$1" ] && reaped=$((reaped + 1))
        shift 2
    done
    [ "$reaped" = 3 ] && [ -z "$zombies" ] && break
    sleep 0.2
    i=$((i + 1))
done
verdict orphans-reaped "orphans (pid ppid): $orphans; reaped=$reaped/3; zombies: ${zombies:-none}" \
    is "$reaped:$zombies" "3:"

# ── ctrl-alt-del goes to PID 1 as SIGINT ──
# reboot(RB_DISABLE_CAD) sets the kernel's C_A_D flag to 0: the kernel then signals PID 1
# instead of rebooting at once (kernel.ctrl-alt-del shows the flag; the kernel's default is 1).
cad=$(cat /proc/sys/kernel/ctrl-alt-del)
verdict ctrl-alt-del-disabled "kernel.ctrl-alt-del=$cad" is "$cad" 0

case $boot in
    2) check reboot-ctrl-alt-del PASS "boot 2 came after ctrl-alt-del (marker '$marker')" ;;
    3) check reboot-sigint PASS "boot 3 came after SIGINT to PID 1 (marker '$marker')" ;;
esac
