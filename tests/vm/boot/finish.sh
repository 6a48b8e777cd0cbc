#!/bin/sh
# Ends a boot; the disk (/dev/vda) remembers how many boots are done.
# Boot 1: ctrl-alt-del — the test presses it through QEMU's monitor when asked on the second
#   serial port; the kernel turns it into SIGINT to PID 1 (corrald disabled CAD), so corrald
#   stops every unit and reboots.
# Boot 2: SIGINT to PID 1 directly: reboot again.
# Boot 3: SIGTERM to PID 1: stop every unit and power off.
marker=$(dd if=/dev/vda bs=16 count=1 2>/dev/null | tr -d '\000')
case $marker in
    corral-boot-[0-9]) done=${marker#corral-boot-} ;;
    *) done=0 ;;
esac
boot=$((done + 1))
printf 'corral-boot-%s' "$boot" | dd of=/dev/vda bs=16 count=1 conv=notrunc,fsync 2>/dev/null
case $boot in
    1)
        echo "finish: boot 1 done, pressing ctrl-alt-del"
        echo ctrl-alt-del > /dev/ttyS1
        sleep 15
        echo "finish: no ctrl-alt-del arrived; sending SIGINT to PID 1"
        kill -INT 1
        ;;
    2)
        echo "finish: boot 2 done, sending SIGINT to PID 1"
        kill -INT 1
        ;;
    *)
        echo "finish: boot $boot done, sending SIGTERM to PID 1"
        kill -TERM 1
        ;;
esac
