#!/bin/sh
# prep.service: the host side the attacks below aim at.
mount --make-rshared / || echo "prep.sh: mount --make-rshared / failed"
chown 1001:1001 /var/log/svc
grep -c . /proc/1/mountinfo > /var/priv/mounts-before
echo "prep.sh: / is $(awk '$5 == "/" { print $7 }' /proc/1/mountinfo)"
# The kernel's default, which corrald as PID 1 keeps (no sysctl.d here): an unprivileged user
# may hard-link a file it does not own. Set explicitly, so the hard-link attack is possible.
echo 0 > /proc/sys/fs/protected_hardlinks
