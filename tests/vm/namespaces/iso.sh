#!/bin/sh
# iso.service: records what its fresh namespaces look like from inside, for ns.sh.
O=/var/ns/iso
echo $$ > $O.pid
hostname > $O.hostname
cat /proc/net/dev > $O.netdev
cat /proc/self/cgroup > $O.cgroup
ls /sys/fs/cgroup > $O.cgroupfs
cat /proc/sys/net/ipv4/ip_unprivileged_port_start > $O.port
cat /proc/sys/kernel/msgmax > $O.msgmax
# Private /tmp: written here, looked for on the host by ns.sh.
echo secret > /tmp/iso-secret && cat /tmp/iso-secret > $O.tmp
# Read-only /etc: the write must fail with EROFS.
if touch /etc/iso-probe 2> $O.ro-err; then echo writable > $O.ro; else echo refused > $O.ro; fi
# IPC: a POSIX message queue created in this IPC namespace's mqueue file system.
mkdir /tmp/mq && mount -t mqueue mqueue /tmp/mq && touch /tmp/mq/corral-iso-q
ls /tmp/mq > $O.mq
echo ok > $O.done
exec sleep 1000
