#!/usr/bin/env bash
# record.sh OUT CMD... runs CMD as root with the kernel's scheduler events
# traced (tracefs: sched_switch, and sched_wakeup of threads named like CMD's
# binary, each with the waker's user stack) and writes the trace to OUT.
# pausewhy.py reads it. See bench/NOTES.md, "Who takes the CPU in a pause".
set -euo pipefail
T=/sys/kernel/tracing
[ -e $T/trace ] || mount -t tracefs nodev $T
out=$1; shift
name=$(basename "$1" | cut -c1-15)
echo 0 >$T/tracing_on
echo >$T/trace
echo >$T/set_event
echo 131072 >$T/buffer_size_kb
echo "comm ~ \"$name*\"" >$T/events/sched/sched_wakeup/filter
echo 1 >$T/events/sched/sched_wakeup/enable
echo 1 >$T/events/sched/sched_switch/enable
echo 1 >$T/options/userstacktrace
echo 1 >$T/tracing_on
rc=0
"$@" || rc=$?
echo 0 >$T/tracing_on
cat $T/trace >"$out"
echo 0 >$T/options/userstacktrace
echo >$T/set_event
echo 0 >$T/events/sched/sched_wakeup/filter
exit $rc
