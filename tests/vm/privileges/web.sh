#!/bin/sh
# web.service / web-nocap.service: records its capabilities, then serves /srv/www on port $2.
O=/var/priv/$1
cat /proc/self/status > $O.status
id -u > $O.uid
/bin/busybox httpd -f -p "$2" -h /srv/www 2> $O.err
echo $? > $O.rc
