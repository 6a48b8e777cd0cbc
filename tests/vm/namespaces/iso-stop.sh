#!/bin/sh
# iso.service's exec-stop: must run in the service's namespaces, joined from its main process
# (PID 1 of the service's PID namespace, now `sleep`): its hostname, its private /tmp, its
# network with only lo, and a PID in the same PID namespace.
h=$(hostname)
t=$(cat /tmp/iso-secret 2>/dev/null)
me=$(readlink /proc/self/ns/pid); main=$(readlink /proc/1/ns/pid); comm=$(cat /proc/1/comm)
ifs=$(awk -F: 'NR > 2 { gsub(/ /, "", $1); printf "%s ", $1 }' /proc/net/dev)
detail="hostname '$h', /tmp/iso-secret '$t', pid $$ in $me with PID 1 '$comm' in $main, interfaces: $ifs"
if [ "$h" = corral-iso ] && [ "$t" = secret ] && [ "$$" != 1 ] && [ "$me" = "$main" ] \
    && [ "$comm" = sleep ] && [ "$ifs" = "lo " ]; then
    echo "CORRAL-CHECK exec-stop PASS $detail"
else
    echo "CORRAL-CHECK exec-stop FAIL $detail"
fi
