#!/bin/sh
# rootfs.service: runs in /srv/rootfs; results go to /out (/var/ns on the host).
O=/out/rootfs
echo $$ > $O.pid
ls / > $O.ls
cat /etc/corral-rootfs > $O.marker 2>&1
if touch /bin/rootfs-probe 2> $O.ro-err; then echo writable > $O.ro; else echo refused > $O.ro; fi
echo ok > $O.done
exec sleep 1000
