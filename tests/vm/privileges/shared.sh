#!/bin/sh
# shared-ok.service: inside /srv/good. Mounts a tmpfs of its own, records its mount table.
mkdir -p /mine && mount -t tmpfs mine /mine && echo mine > /mine/hello
cat /proc/self/mountinfo > /data/shared.mountinfo
echo ok > /data/shared.done
exec sleep 1000
