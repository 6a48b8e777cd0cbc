#!/bin/sh
# Leaves orphans behind: each subshell starts a child and exits at once, so the child is
# reparented to PID 1. The child records its pid and its parent's pid once its first parent is
# gone, then exits: PID 1 must reap it, or it stays a zombie.
for i in 1 2 3; do
    (/bin/sh -c 'sleep 0.5; read -r pid comm state ppid rest < /proc/$$/stat; echo "$pid $ppid" >> /run/orphans' &)
done
exec sleep 100000
