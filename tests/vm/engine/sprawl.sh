#!/bin/sh
# sprawl.service's main process, as the unprivileged user svc: 3000 cgroups side by side and
# a chain 100 deep below its delegated cgroup. Removing them when the unit stops is work of
# the user's making: corrald does it off its loop.
CG=/sys/fs/cgroup/system.slice/sprawl.service
seq 0 2999 | sed "s|^|$CG/w|" | xargs mkdir || echo "sprawl: mkdir failed"
mkdir -p "$CG$(seq 100 | sed 's|.*|/n|' | tr -d '\n')" || echo "sprawl: mkdir -p failed"
: > /tmp/sprawl-made
exec /bin/sleep 100000
