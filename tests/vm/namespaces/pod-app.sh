#!/bin/sh
# pod-app.service: reaches pod-infra's server over the loopback of the shared namespace.
i=0
while [ $i -lt 100 ]; do
    reply=$(nc 127.0.0.1 7000 < /dev/null 2>/dev/null)
    [ "$reply" = pong ] && break
    sleep 0.1; i=$((i + 1))
done
echo "$reply" > /var/ns/pod-app.reply
echo ok > /var/ns/pod-app.done
exec sleep 1000
