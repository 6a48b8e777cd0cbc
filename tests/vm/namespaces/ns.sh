#!/bin/sh
# checks.service: asserts from the host side of the guest, in the guest kernel, that every
# namespace of the other units holds. Reads what each service recorded from inside (in /var/ns)
# and compares it with what the kernel shows the host: /proc/PID/{ns,status,mountinfo,net,root}
# of the service's main process. Prints CORRAL-CHECK lines, then powers the VM off.
CG=/sys/fs/cgroup/system.slice
N=/var/ns
pass() { echo "CORRAL-CHECK $1 PASS $2"; }
fail() { echo "CORRAL-CHECK $1 FAIL $2"; }
verdict() { if [ "$ok" = 1 ]; then pass "$1" "$2"; else fail "$1" "$2"; fi; }
# The unit's main process: the one in its cgroup whose parent is corrald (PID 1).
mainpid() {
    for p in $(cat $CG/$1/cgroup.procs 2>/dev/null); do
        [ "$(awk '/^PPid:/ { print $2 }' /proc/$p/status)" = 1 ] && { echo $p; return; }
    done
}
nsof() { readlink /proc/$1/ns/$2; }
# Interface names of a /proc/net/dev.
ifaces() { awk -F: 'NR > 2 { gsub(/ /, "", $1); printf "%s ", $1 }' "$1"; }
uptime_s() { awk '{ print $1 }' /proc/uptime; }

i=0
while [ $i -lt 200 ]; do
    missing=
    for s in iso rootfs userns userdef time time-neg pod-app; do
        [ -e $N/$s.done ] || missing="$missing $s"
    done
    [ -z "$missing" ] && break
    sleep 0.1; i=$((i + 1))
done
[ -n "$missing" ] && echo "ns.sh: no results from:$missing"
sleep 0.3   # each service has exec'ed its final sleep

ISO=$(mainpid iso.service)
ROOTFS=$(mainpid rootfs.service)
USERNS=$(mainpid userns.service)
USERDEF=$(mainpid userdef.service)
TIME=$(mainpid time.service)
INFRA=$(mainpid pod-infra.service)
APP=$(mainpid pod-app.service)
echo "ns.sh: main pids iso=$ISO rootfs=$ROOTFS userns=$USERNS userdef=$USERDEF time=$TIME pod-infra=$INFRA pod-app=$APP"

# --- pid: the service is PID 1 of its own namespace.
inside=$(cat $N/iso.pid 2>/dev/null)
nspid=$(awk '/^NSpid:/ { print $2, $NF }' /proc/$ISO/status 2>/dev/null)
ok=0
[ -n "$ISO" ] && [ "$inside" = 1 ] && [ "$nspid" = "$ISO 1" ] \
    && [ "$(nsof $ISO pid)" != "$(nsof 1 pid)" ] && ok=1
verdict pid "\$\$ inside = $inside; host pid $ISO has NSpid '$nspid'; $(nsof $ISO pid) vs $(nsof 1 pid)"

# --- uts: its own hostname; the host's is untouched.
inside=$(cat $N/iso.hostname 2>/dev/null); host=$(hostname)
ok=0
[ "$inside" = corral-iso ] && [ "$host" != corral-iso ] \
    && [ "$(nsof $ISO uts)" != "$(nsof 1 uts)" ] && ok=1
verdict hostname "inside '$inside', host '$host'"

# --- net: only lo inside; the host has more (dummy0 from modules-load.d).
inside=$(ifaces $N/iso.netdev); live=$(ifaces /proc/$ISO/net/dev); host=$(ifaces /proc/1/net/dev)
ok=0
[ "$inside" = "lo " ] && [ "$live" = "lo " ] && [ "$host" != "lo " ] \
    && [ "$(nsof $ISO net)" != "$(nsof 1 net)" ] && ok=1
verdict net-lo "inside: $inside(live: $live); host: $host"

# --- mount: its own table, with mounts the host doesn't have.
ok=0
mi_iso=$(awk '{ print $5, $9 }' /proc/$ISO/mountinfo 2>/dev/null | sort | tr '\n' ' ')
mi_host=$(awk '{ print $5, $9 }' /proc/1/mountinfo | sort | tr '\n' ' ')
tmp_iso=$(awk '$5 == "/tmp" { print $9 }' /proc/$ISO/mountinfo 2>/dev/null)
tmp_host=$(awk '$5 == "/tmp" { print $9 }' /proc/1/mountinfo)
[ -n "$mi_iso" ] && [ "$mi_iso" != "$mi_host" ] && [ "$tmp_iso" = tmpfs ] && [ -z "$tmp_host" ] \
    && [ "$(nsof $ISO mnt)" != "$(nsof 1 mnt)" ] && ok=1
verdict mount-table "inside: $mi_iso| host: $mi_host"

# --- private /tmp: written inside, seen through the service's root, absent on the host.
ok=0
[ "$(cat $N/iso.tmp 2>/dev/null)" = secret ] && [ -e /proc/$ISO/root/tmp/iso-secret ] \
    && [ ! -e /tmp/iso-secret ] && ok=1
verdict private-tmp "inside read back '$(cat $N/iso.tmp 2>/dev/null)'; host /tmp: $(ls /tmp | tr '\n' ' ')"

# --- read-only /etc: the write failed inside (EROFS) while the host can write there.
ok=0
err=$(cat $N/iso.ro-err 2>/dev/null)
opts=$(awk '$5 == "/etc" { print $6 }' /proc/$ISO/mountinfo 2>/dev/null)
touch /etc/host-probe && [ "$(cat $N/iso.ro 2>/dev/null)" = refused ] \
    && [ "${err#*Read-only file system}" != "$err" ] && [ ! -e /etc/iso-probe ] \
    && [ "${opts%%,*}" = ro ] && ok=1
verdict read-only "inside: '$err'; /etc mount options inside: $opts; the host can write /etc"

# --- cgroup: the service sees its own cgroup as the root.
inside=$(cat $N/iso.cgroup 2>/dev/null); host=$(cat /proc/$ISO/cgroup 2>/dev/null)
ok=0
[ "$inside" = "0::/" ] && [ "$host" = "0::/system.slice/iso.service" ] \
    && ! grep -q system.slice $N/iso.cgroupfs && [ "$(nsof $ISO cgroup)" != "$(nsof 1 cgroup)" ] \
    && ok=1
verdict cgroup "inside '$inside', host sees '$host'"

# --- root: only the new root's entries; /bin is a read-only bind from the host. The host's /
# is the initramfs (rootfs), where pivot_root fails with EINVAL: corral took its MS_MOVE +
# chroot path.
inside=$(tr '\n' ' ' < $N/rootfs.ls 2>/dev/null)
live=$(ls /proc/$ROOTFS/root/ 2>/dev/null | tr '\n' ' ')
hostfs=$(awk '$5 == "/" { print $9 }' /proc/1/mountinfo)
ok=0
[ "$inside" = "bin checks etc out proc " ] && [ "$live" = "$inside" ] \
    && [ "$(cat $N/rootfs.marker 2>/dev/null)" = "corral rootfs" ] \
    && [ "$(cat $N/rootfs.ro 2>/dev/null)" = refused ] && [ "$hostfs" = rootfs ] && ok=1
verdict root "ls / inside: $inside(live: $live); marker '$(cat $N/rootfs.marker 2>/dev/null)'; host / ($hostfs): $(ls / | tr '\n' ' ')"

# --- user: an explicit map; root inside is 100000 outside, and owns the new uts namespace.
map=$(awk '{ print $1, $2, $3 }' /proc/$USERNS/uid_map 2>/dev/null)
uid=$(awk '/^Uid:/ { print $2 }' /proc/$USERNS/status 2>/dev/null)
ok=0
[ "$map" = "0 100000 65536" ] && [ "$uid" = 100000 ] && [ "$(cat $N/userns.uid 2>/dev/null)" = 0 ] \
    && [ "$(cat $N/userns.hostname 2>/dev/null)" = corral-userns ] \
    && [ "$(nsof $USERNS user)" != "$(nsof 1 user)" ] && ok=1
verdict user-map "uid_map '$map'; uid $(cat $N/userns.uid 2>/dev/null) inside, $uid outside; hostname '$(cat $N/userns.hostname 2>/dev/null)'"

# --- user, default map: root inside = the service's user (test, 1000) outside.
map=$(awk '{ print $1, $2, $3 }' /proc/$USERDEF/uid_map 2>/dev/null)
gmap=$(awk '{ print $1, $2, $3 }' /proc/$USERDEF/gid_map 2>/dev/null)
uid=$(awk '/^Uid:/ { print $2 }' /proc/$USERDEF/status 2>/dev/null)
ok=0
[ "$map" = "0 1000 1" ] && [ "$gmap" = "0 1000 1" ] && [ "$uid" = 1000 ] \
    && [ "$(cat $N/userdef.uid 2>/dev/null)" = 0 ] && [ "$(cat $N/userdef.gid 2>/dev/null)" = 0 ] && ok=1
verdict user-default-map "uid_map '$map', gid_map '$gmap'; uid $(cat $N/userdef.uid 2>/dev/null) inside, $uid outside"

# --- time: the boot clock inside is a day ahead.
inside=$(awk '{ print $1 }' $N/time.uptime 2>/dev/null); host=$(uptime_s)
ok=0
awk -v i="$inside" -v h="$host" 'BEGIN { exit !(i != "" && i >= 86400 && i <= 86400 + h) }' \
    && [ "$(nsof $TIME time)" != "$(nsof 1 time)" ] && ok=1
verdict time "uptime inside $inside, host $host"

# --- time, negative offsets: the boot clock 1 s behind; monotonic -0.5 s as -1 s + 0.5e9 ns.
inside=$(awk '{ print $1 }' $N/time-neg.uptime 2>/dev/null); host=$(uptime_s)
offsets=$(tr -s ' \n' '  ' < $N/time-neg.offsets 2>/dev/null)
ok=0
awk -v i="$inside" -v h="$host" 'BEGIN { d = h - i; exit !(i != "" && d >= 0.9 && d <= 2.5) }' \
    && [ "$offsets" = "monotonic -1 500000000 boottime -1 0 " ] && ok=1
verdict time-negative "uptime inside $inside, host $host; timens_offsets: $offsets"

# --- ipc: a message queue made inside is not the host's, and the host's is not inside.
mkdir -p /run/mq && mount -t mqueue mqueue /run/mq && touch /run/mq/corral-host-q
host=$(ls /run/mq | tr '\n' ' '); inside=$(ls /proc/$ISO/root/tmp/mq 2>/dev/null | tr '\n' ' ')
ok=0
[ "$inside" = "corral-iso-q " ] && [ "$host" = "corral-host-q " ] \
    && [ "$(nsof $ISO ipc)" != "$(nsof 1 ipc)" ] && ok=1
verdict ipc "queues inside: $inside; host: $host"

# --- namespaced sysctls: set inside, the host's values are the kernel defaults.
port=$(cat /proc/sys/net/ipv4/ip_unprivileged_port_start); msgmax=$(cat /proc/sys/kernel/msgmax)
ok=0
[ "$(cat $N/iso.port 2>/dev/null)" = 80 ] && [ "$port" = 1024 ] \
    && [ "$(cat $N/iso.msgmax 2>/dev/null)" = 4096 ] && [ "$msgmax" != 4096 ] && ok=1
verdict sysctl "inside ip_unprivileged_port_start=$(cat $N/iso.port 2>/dev/null) msgmax=$(cat $N/iso.msgmax 2>/dev/null); host $port, $msgmax"

# --- pod: pod-app joined pod-infra's network namespace (pulled in, started first).
ip link set lo up
if nc 127.0.0.1 7000 < /dev/null > /tmp/host-reply 2>&1; then from_host=reached; else from_host=refused; fi
start_infra=$(awk '{ print $22 }' /proc/$INFRA/stat 2>/dev/null)
start_app=$(awk '{ print $22 }' /proc/$APP/stat 2>/dev/null)
ok=0
[ -n "$INFRA" ] && [ -n "$APP" ] && [ "$(nsof $INFRA net)" = "$(nsof $APP net)" ] \
    && [ "$(nsof $APP net)" != "$(nsof 1 net)" ] && [ "$(cat $N/pod-app.reply 2>/dev/null)" = pong ] \
    && [ "$from_host" = refused ] && [ "$start_infra" -le "$start_app" ] && ok=1
verdict pod-net "pod-infra $(nsof $INFRA net) (started at tick $start_infra), pod-app $(nsof $APP net) (tick $start_app); pod-app got '$(cat $N/pod-app.reply 2>/dev/null)', the host was $from_host"

# --- sharing with a unit that is not running: lonely.service never ran.
ok=0
[ -z "$(cat $CG/lonely.service/cgroup.procs 2>/dev/null)" ] && ok=1
verdict owner-not-running "lonely.service processes: '$(cat $CG/lonely.service/cgroup.procs 2>/dev/null)'"

echo "ns.sh: guest uptime $(uptime_s) s"
kill -TERM 1
