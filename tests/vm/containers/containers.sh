#!/bin/sh
# Container runtimes with the systemd cgroup driver, under corrald as PID 1 (DESIGN §9): kubelet's
# pod slices replayed with busctl, Debian's runc (on /run/systemd/private, no bus yet) and crun
# (on the system bus) running busybox containers from bundles built here, with --no-pivot (the
# initramfs refuses pivot_root): run, exec, update (the limits change in the scope's files),
# kill, delete (the scope is gone). CORRAL-CHECK lines.
export SYSTEMD_COLORS=0 SYSTEMD_PAGER= PATH=/usr/sbin:/usr/bin:/sbin:/bin
check() { echo "CORRAL-CHECK $*"; }
banner() { echo; echo "=== $* ==="; }
BUSCTL=/usr/bin/busctl
PRIVATE="$BUSCTL --address=unix:path=/run/systemd/private"
M="org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager"
CG=/sys/fs/cgroup
PODS=kubepods-besteffort-pod1.slice
POD=kubepods.slice/kubepods-besteffort.slice/$PODS
t0=$(cut -d' ' -f1 /proc/uptime)
elapsed() { awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.1fs", b - a }'; }
# until CMD succeeds (at most 10 s)
until_ok() { for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
gone() { ! corralctl status "$1" >/dev/null 2>&1; }
# held UNIT KEY…: the unit's state and the values corral holds for it (its Limits), in order
held() {
    json=$(corralctl --json status "$1" | tr -d ' \n'); shift
    for k in ActiveState SubState "$@"; do
        echo "$json" | grep -o "\"$k\":\"[^\"]*\"" | head -1 | cut -d'"' -f4
    done | tr '\n' ' ' | sed 's/ $//'
}

# A busybox root file system and one bundle per container: config.json with the container's
# cgroupsPath in the pod slice ("slice:prefix:name" is unit prefix-name.scope in that slice).
mkdir -p /tmp/rootfs/bin /tmp/rootfs/proc /tmp/rootfs/dev /tmp/rootfs/tmp
cp /bin/busybox /tmp/rootfs/bin/busybox
for a in sh sleep cat echo; do ln -s busybox /tmp/rootfs/bin/$a; done
bundle() { # NAME CGROUPS-PATH
    mkdir -p /tmp/$1
    cat > /tmp/$1/config.json <<EOF
{
  "ociVersion": "1.0.2",
  "process": {
    "terminal": false,
    "user": {"uid": 0, "gid": 0},
    "args": ["/bin/sleep", "1000"],
    "env": ["PATH=/bin"],
    "cwd": "/"
  },
  "root": {"path": "/tmp/rootfs"},
  "hostname": "$1",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]}
  ],
  "linux": {
    "cgroupsPath": "$2",
    "resources": {
      "memory": {"limit": 67108864},
      "cpu": {"shares": 512, "quota": 50000, "period": 100000},
      "pids": {"limit": 32},
      "devices": [{"allow": false, "access": "rwm"}]
    },
    "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]
  }
}
EOF
}
bundle c1 "$PODS:cri-containerd:c1"
bundle c2 "$PODS:crio:c2"
bundle c3 "$PODS:cri-containerd:c3"

# ── systemd's marker and socket ──
v=$($PRIVATE get-property $M Version 2>&1)
if [ -d /run/systemd/system ] && [ "$v" = 's "252"' ]; then
    check compat-socket PASS "/run/systemd/system made; Version $v on /run/systemd/private"
else
    check compat-socket FAIL "marker: $(ls -ld /run/systemd/system 2>&1); Version: $v"
fi

# ── kubelet's pod slices: the sequence its systemd cgroup driver sends, with busctl ──
# Each slice Wants= its parent, takes no PIDs, and gets its limits with SetUnitProperties.
ok=yes; why=
slice() { # NAME PARENT
    $PRIVATE call -- $M StartTransientUnit 'ssa(sv)a(sa(sv))' "$1" replace 6 \
        Description s "libcontainer container $1" Wants as 1 "$2" \
        MemoryAccounting b true CPUAccounting b true TasksAccounting b true \
        DefaultDependencies b false 0 2>&1
}
for s in "kubepods.slice -.slice" "kubepods-besteffort.slice kubepods.slice" "$PODS kubepods-besteffort.slice"; do
    set -- $s
    out=$(slice "$1" "$2")
    case "$out" in *"/org/freedesktop/systemd1/job/"*) ;; *) ok=no; why="$why; $1: $out" ;; esac
done
# kubelet ignores UnitExists for a slice it made before: the name is systemd's.
dup=$(SYSTEMD_LOG_LEVEL=debug slice "$PODS" kubepods-besteffort.slice)
echo "$dup" | grep -q "org.freedesktop.systemd1.UnitExists" || { ok=no; why="$why; duplicate: $dup"; }
out=$($PRIVATE call $M SetUnitProperties 'sba(sv)' "$PODS" true 3 \
    MemoryMax t 268435456 CPUWeight t 2 TasksMax t 1024 2>&1) || { ok=no; why="$why; set: $out"; }
got="$(cat $CG/$POD/memory.max) $(cat $CG/$POD/cpu.weight) $(cat $CG/$POD/pids.max)"
[ "$got" = "268435456 2 1024" ] || { ok=no; why="$why; files: $got"; }
if [ $ok = yes ]; then check kubelet-pod-slice PASS "3 slices made over /run/systemd/private, UnitExists for a duplicate, limits in $POD: memory.max cpu.weight pids.max = $got"
else check kubelet-pod-slice FAIL "$why"; fi

# ── runc, no bus yet: go-systemd falls back to /run/systemd/private (no Hello) ──
SC=$CG/$POD/cri-containerd-c1.scope
runc --systemd-cgroup run -d --no-pivot --pid-file /tmp/c1.pid -b /tmp/c1 c1 </dev/null >/tmp/c1.log 2>&1
pid=$(cat /tmp/c1.pid)
cg=$(cat /proc/$pid/cgroup 2>&1)
files="$(cat $SC/memory.max) $(cat $SC/pids.max) $(cat $SC/cpu.max)"
held=$(held cri-containerd-c1.scope memory-max pids-max cpu-max)
if [ "$cg" = "0::/$POD/cri-containerd-c1.scope" ] && [ "$files" = "67108864 32 50000 100000" ] \
    && [ "$held" = "active running 64M 32 50%" ]; then
    check runc-run PASS "init $pid in $cg; scope files $files; corral holds $held ($(elapsed))"
else
    check runc-run FAIL "cgroup $cg; files $files; held $held; runc: $(cat /tmp/c1.log)"
fi

out=$(runc exec c1 /bin/cat /proc/self/cgroup 2>&1)
if [ "$out" = "0::/$POD/cri-containerd-c1.scope" ]; then check runc-exec PASS "runc exec runs in the scope: $out"
else check runc-exec FAIL "$out"; fi

runc update --memory 33554432 --pids-limit 16 --cpu-share 1024 c1 >/tmp/c1-update.log 2>&1
files="$(cat $SC/memory.max) $(cat $SC/pids.max) $(cat $SC/cpu.weight)"
held=$(held cri-containerd-c1.scope memory-max pids-max cpu-weight)
if [ "$files" = "33554432 16 39" ] && [ "$held" = "active running 32M 16 39" ]; then
    check runc-update PASS "scope files memory.max pids.max cpu.weight = $files; SetUnitProperties kept $held"
else check runc-update FAIL "files $files; held $held; $(cat /tmp/c1-update.log)"; fi

# ── the system bus: corrald owns org.freedesktop.systemd1 beside org.corral1 ──
corralctl start dbus.service
if until_ok $BUSCTL --system get-property $M Version; then
    check bus-name PASS "org.freedesktop.systemd1 on the system bus ($(elapsed))"
else check bus-name FAIL "$($BUSCTL --system list 2>&1 | head -5)"; fi

# ── crun through the bus (sd-bus; it matches JobRemoved on sender org.freedesktop.systemd1) ──
SC2=$CG/$POD/crio-c2.scope
crun --systemd-cgroup run -d --no-pivot --pid-file /tmp/c2.pid -b /tmp/c2 c2 </dev/null >/tmp/c2.log 2>&1
pid=$(cat /tmp/c2.pid)
cg=$(cat /proc/$pid/cgroup 2>&1)
files="$(cat $SC2/cpu.weight) $(cat $SC2/container/memory.max 2>&1)"
if [ "$cg" = "0::/$POD/crio-c2.scope/container" ] && [ "$files" = "20 67108864" ]; then
    check crun-run PASS "init $pid in $cg; the scope's cpu.weight (corral, from CPUWeight) and container/memory.max (crun) = $files"
else check crun-run FAIL "cgroup $cg; files $files; crun: $(cat /tmp/c2.log)"; fi

out=$(crun exec c2 /bin/cat /proc/self/cgroup 2>&1)
if [ "$out" = "0::/$POD/crio-c2.scope/container" ]; then check crun-exec PASS "crun exec runs in $out"
else check crun-exec FAIL "$out"; fi

crun update --cpu-share 1024 --memory 33554432 c2 >/tmp/c2-update.log 2>&1
files="$(cat $SC2/cpu.weight) $(cat $SC2/container/memory.max 2>&1)"
if [ "$files" = "39 33554432" ]; then check crun-update PASS "scope cpu.weight (corral) and container/memory.max (crun) = $files"
else check crun-update FAIL "files $files; $(cat /tmp/c2-update.log)"; fi

# Both containers side by side in the pod slice, with what binds each (scripts/demo --containers).
banner "corralctl tree kubepods.slice: two containers in a pod slice, with their limits"
tree=$(corralctl tree kubepods.slice 2>&1)
echo "$tree"
banner "corralctl list"
corralctl list | grep -E "UNIT|kubepods|scope"
if echo "$tree" | grep -q "cri-containerd-c1.scope active (running)  \[cpu-max=50% cpu-period=100ms cpu-weight=39 memory-max=32M pids-max=16\]" \
    && echo "$tree" | grep -q "crio-c2.scope active (running)  \[cpu-weight=39\]" \
    && echo "$tree" | grep -q "kubepods-besteffort-pod1.slice active  \[cpu-weight=2 memory-max=256M pids-max=1024\]"; then
    check corralctl-tree PASS "both scopes in the pod slice, with their limits, in corralctl tree"
else check corralctl-tree FAIL "$tree"; fi

# An upgrade in place (the only one as PID 1): the scopes and slices made over D-Bus have no
# file, so the state file carries them across the re-exec, with their limits.
corralctl daemon-reexec
if until_ok corralctl status cri-containerd-c1.scope \
    && [ "$(held cri-containerd-c1.scope memory-max pids-max)" = "active running 32M 16" ] \
    && [ "$(held crio-c2.scope cpu-weight)" = "active running 39" ] \
    && [ "$(held $PODS memory-max)" = "active active 256M" ] \
    && until_ok $BUSCTL --system get-property $M Version; then
    check reexec-keeps-scopes PASS "after daemon-reexec both scopes and the pod slice are there, with their limits ($(elapsed))"
else check reexec-keeps-scopes FAIL "$(corralctl list 2>&1)"; fi

runc kill c1 KILL
until_ok gone cri-containerd-c1.scope; killed=$?
runc delete c1 >/tmp/c1-delete.log 2>&1; deleted=$?
if [ $killed = 0 ] && [ $deleted = 0 ] && [ ! -d $SC ]; then
    check runc-kill-delete PASS "the scope went once its processes did; runc delete ok; its cgroup is removed ($(elapsed))"
else check runc-kill-delete FAIL "killed $killed, deleted $deleted ($(cat /tmp/c1-delete.log)); $(ls -d $SC 2>&1); $(corralctl list 2>&1 | grep scope)"; fi

crun kill c2 KILL
until_ok gone crio-c2.scope; killed=$?
crun delete c2 >/tmp/c2-delete.log 2>&1; deleted=$?
if [ $killed = 0 ] && [ $deleted = 0 ] && [ ! -d $SC2 ]; then check crun-kill-delete PASS "the scope and its cgroup are gone"
else check crun-kill-delete FAIL "killed $killed, deleted $deleted ($(cat /tmp/c2-delete.log)); $(ls -d $SC2 2>&1)"; fi

# runc through the bus too, deleted running (delete -f: kill, then StopUnit of a scope that went).
runc --systemd-cgroup run -d --no-pivot -b /tmp/c3 c3 </dev/null >/tmp/c3.log 2>&1
st=$(corralctl status cri-containerd-c3.scope 2>&1)
runc delete -f c3 >/tmp/c3-delete.log 2>&1; deleted=$?
if echo "$st" | grep -q "Active: active (running)" && [ $deleted = 0 ] \
    && until_ok gone cri-containerd-c3.scope && [ ! -d $CG/$POD/cri-containerd-c3.scope ]; then
    check runc-bus PASS "runc over the system bus: run, delete -f ($(elapsed))"
else check runc-bus FAIL "$st; delete $deleted: $(cat /tmp/c3.log /tmp/c3-delete.log)"; fi

# ── kubelet removes the pod: StopUnit of its slice ──
out=$($BUSCTL --system call $M StopUnit ss "$PODS" replace 2>&1)
if until_ok gone "$PODS" && [ ! -d $CG/$POD ] && corralctl status kubepods-besteffort.slice >/dev/null; then
    check kubelet-pod-removed PASS "StopUnit $PODS: $out; the slice and its cgroup are gone, its parents stay ($(elapsed))"
else check kubelet-pod-removed FAIL "$out; $(ls -d $CG/$POD 2>&1)"; fi

kill -TERM 1
