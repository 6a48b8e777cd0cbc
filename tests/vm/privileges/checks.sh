#!/bin/sh
# checks.service: plays the attacker of issue 14 against corrald as PID 1, in the guest kernel,
# and checks from the host side that nothing outside a service's root was mounted on, made
# read-only or created; that a file: output replaced by a symlink, a FIFO or a hard link is
# refused at once while the daemon keeps answering; and that each service holds exactly the
# capabilities and no_new_privs its unit asks for (/proc/self/status from inside). Prints
# CORRAL-CHECK lines, then powers the VM off with SIGTERM to PID 1.
CG=/sys/fs/cgroup/system.slice
P=/var/priv
pass() { echo "CORRAL-CHECK $1 PASS $2"; }
fail() { echo "CORRAL-CHECK $1 FAIL $2"; }
verdict() { if [ "$ok" = 1 ]; then pass "$1" "$2"; else fail "$1" "$2"; fi; }
active() { corralctl status "$1" 2>/dev/null | awk '$1 == "Active:" { print $2; exit }'; }
status_field() { awk -v k="$2:" '$1 == k { print $2 }' "$1" 2>/dev/null; }
mainpid() {
    for p in $(cat $CG/$1/cgroup.procs 2>/dev/null); do
        [ "$(awk '/^PPid:/ { print $2 }' /proc/$p/status)" = 1 ] && { echo $p; return; }
    done
}
# As svc: a one-off command through corralctl run (the service's own user, no password).
as_svc() { corralctl run --wait -p user=svc -- /bin/sh -c "$1"; }

i=0
while [ $i -lt 300 ]; do
    [ -e /srv/payload/shared.done ] && [ -e $P/web.status ] && [ -e $P/nocap.rc ] \
        && [ -e $P/root.chown ] && [ -s /var/log/svc/out.log ] && break
    sleep 0.1; i=$((i + 1))
done
sleep 0.5   # httpd is listening
# corrald's reason for each refused start is on the console (its stderr as PID 1): the test
# (tests/vm_privileges.rs) finds those lines there.

# --- A bind onto a symlink out of the root (evil/etc -> /etc), shared propagation.
ok=0
[ "$(active evil-bind.service)" = failed ] && [ -s /etc/passwd ] \
    && [ ! -e /etc/payload-marker ] && [ -z "$(awk '$5 == "/etc"' /proc/1/mountinfo)" ] && ok=1
verdict mount-symlink-bind "evil-bind.service $(active evil-bind.service); host /etc: $(ls /etc | tr '\n' ' ')"

# --- read-only-paths through the same symlink: the host's /etc stays writable.
ok=0
[ "$(active evil-ro.service)" = failed ] && touch /etc/host-probe \
    && [ -z "$(awk '$5 == "/etc"' /proc/1/mountinfo)" ] && ok=1
verdict mount-symlink-read-only "evil-ro.service $(active evil-ro.service); touch /etc/host-probe: $([ -e /etc/host-probe ] && echo ok)"

# --- A missing target under the symlink is not created on the host.
ok=0
[ "$(active evil-create.service)" = failed ] && [ ! -e /etc/corral-pwned ] && ok=1
verdict mount-symlink-create "evil-create.service $(active evil-create.service); /etc/corral-pwned: $(ls -d /etc/corral-pwned 2>&1)"

# --- A relative symlink climbing out (evil/up -> ../../..).
ok=0
[ "$(active evil-up.service)" = failed ] && [ ! -e /etc/corral-up ] && ok=1
verdict mount-symlink-up "evil-up.service $(active evil-up.service); /etc/corral-up: $(ls -d /etc/corral-up 2>&1)"

# --- shared propagation, symlink-free root: runs; nothing of its setup, nor its own mount,
# reaches the host; its / is shared (for namespaces it makes) and a slave of the host's.
SHARED=$(mainpid shared-ok.service)
before=$(cat $P/mounts-before)
now=$(grep -c . /proc/1/mountinfo)
leaked=$(awk '$5 ~ "^/srv/good" { print $5 }' /proc/1/mountinfo | tr '\n' ' ')
root_opts=$(awk '$5 == "/" { for (i = 7; $i != "-"; i++) printf "%s ", $i }' /srv/payload/shared.mountinfo 2>/dev/null)
ok=0
[ -n "$SHARED" ] && [ "$(cat /srv/payload/shared.done 2>/dev/null)" = ok ] && [ "$now" = "$before" ] \
    && [ -z "$leaked" ] && [ ! -e /srv/good/mine/hello ] \
    && [ "$(cat /proc/$SHARED/root/mine/hello 2>/dev/null)" = mine ] \
    && [ "${root_opts#*shared:}" != "$root_opts" ] && [ "${root_opts#*master:}" != "$root_opts" ] && ok=1
verdict shared-no-leak "mounts on the host before $before, now $now; host mounts under /srv/good: '$leaked'; service's / propagation: $root_opts"

# A mount the host makes under the root afterwards reaches the service (it is a slave).
mkdir -p /srv/good/late && mount -t tmpfs late /srv/good/late && echo late > /srv/good/late/hello
sleep 0.2
ok=0
[ "$(cat /proc/$SHARED/root/late/hello 2>/dev/null)" = late ] && ok=1
verdict shared-receives "the service sees the host's /srv/good/late: '$(cat /proc/$SHARED/root/late/hello 2>&1)'"

# --- Root with a reduced bounding set and no-new-privileges.
ok=0
bnd=$(status_field $P/root.status CapBnd); eff=$(status_field $P/root.status CapEff)
amb=$(status_field $P/root.status CapAmb); nnp=$(status_field $P/root.status NoNewPrivs)
[ "$bnd" = 0000000000000420 ] && [ "$eff" = 0000000000000420 ] && [ "$amb" = 0000000000000000 ] \
    && [ "$nnp" = 1 ] && [ "$(cat $P/root.chown)" = refused ] \
    && grep -q "Operation not permitted" $P/root.chown-err && ok=1
verdict caps-root-bounding "CapBnd $bnd CapEff $eff CapAmb $amb NoNewPrivs $nnp; chown as root: $(cat $P/root.chown) ($(cat $P/root.chown-err))"

# --- svc with CAP_NET_BIND_SERVICE ambient serves on port 80.
WEB=$(mainpid web.service)
ip link set lo up
reply=$(printf 'GET / HTTP/1.0\r\n\r\n' | timeout 10 nc 127.0.0.1 80 2>&1 | tail -1)
uids=$(for p in $(cat $CG/web.service/cgroup.procs); do awk '/^Uid:/ { print $2 }' /proc/$p/status; done | sort -u | tr '\n' ' ')
bnd=$(status_field $P/web.status CapBnd); eff=$(status_field $P/web.status CapEff)
amb=$(status_field $P/web.status CapAmb); nnp=$(status_field $P/web.status NoNewPrivs)
ok=0
[ -n "$WEB" ] && [ "$reply" = "corral web" ] && [ "$uids" = "1001 " ] && [ "$(cat $P/web.uid)" = 1001 ] \
    && [ "$bnd" = 0000000000000400 ] && [ "$eff" = 0000000000000400 ] && [ "$amb" = 0000000000000400 ] \
    && [ "$nnp" = 1 ] && ok=1
verdict caps-ambient-port-80 "reply '$reply' from uids $uids; CapBnd $bnd CapEff $eff CapAmb $amb NoNewPrivs $nnp"

# --- The control: the same without the capability can't bind a low port.
eff=$(status_field $P/nocap.status CapEff); amb=$(status_field $P/nocap.status CapAmb)
ok=0
[ "$(cat $P/nocap.rc)" != 0 ] && grep -q "Permission denied" $P/nocap.err \
    && [ "$eff" = 0000000000000000 ] && [ "$amb" = 0000000000000000 ] && ok=1
verdict caps-control "httpd -p 81 as svc without it: rc $(cat $P/nocap.rc), '$(cat $P/nocap.err)'; CapEff $eff CapAmb $amb"

# --- file: output, as the unit asked: created 0640 root:root, written by the service.
L=/var/log/svc/out.log
ok=0
[ "$(cat $L)" = "service output" ] && [ "$(stat -c '%a %u %g' $L)" = "640 0 0" ] && ok=1
verdict out-file-created "$(stat -c '%a %u:%g %F' $L): '$(cat $L)'"

victim=$(cat /etc/victim)
# Each attack: svc replaces its log file; the next start must fail at once, leave /etc/victim
# alone, say why, and the daemon must answer right after.
attack() {
    name=$1 how=$2
    as_svc "rm -f $L && $how" > /dev/null 2>&1
    made=$(ls -l $L 2>&1)
    timeout 60 corralctl start out.service > /tmp/start.out 2>&1; rc=$?
    timeout 10 corralctl list > /tmp/list.out 2>&1; listed=$?
        ok=0
    [ "$rc" != 0 ] && [ "$rc" != 124 ] && [ "$listed" = 0 ] && grep -q out.service /tmp/list.out \
        && [ "$(cat /etc/victim)" = "$victim" ] && ok=1
    verdict "$name" "svc made: $made; start exit $rc: $(tr '\n' ' ' < /tmp/start.out); list exit $listed; /etc/victim: '$(cat /etc/victim)'"
}
attack out-symlink "ln -s /etc/victim $L"
attack out-fifo "mkfifo $L"
attack out-hardlink "ln /etc/victim $L"

echo "checks.sh: done"
kill -TERM 1
