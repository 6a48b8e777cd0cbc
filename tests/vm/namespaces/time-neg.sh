#!/bin/sh
# time-neg.service: the negative offsets as the kernel holds them, and a running uptime.
cat /proc/self/timens_offsets > /var/ns/time-neg.offsets
while :; do
    cat /proc/uptime > /var/ns/time-neg.uptime.new
    mv /var/ns/time-neg.uptime.new /var/ns/time-neg.uptime
    [ -e /var/ns/time-neg.done ] || echo ok > /var/ns/time-neg.done
    sleep 0.1
done
