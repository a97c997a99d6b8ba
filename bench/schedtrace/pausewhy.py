"""pausewhy.py TRACE BINARY COMM MS

Reads a trace written by record.sh. For each stretch over MS milliseconds in
which the busiest thread named COMM sat runnable but off its CPU after being
preempted, it prints who preempted it, the user stack (symbolized with
`go tool addr2line BINARY`) of the wake-up that made that task runnable,
and what ran on the other CPUs at that moment.
"""
import re, sys, collections, subprocess
path, binp, comm, lim = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]) / 1e3
sw = re.compile(r'\s*(.+?)-(\d+)\s+\[(\d+)\].*?\s([\d.]+): sched_switch: prev_comm=(.*?) prev_pid=(\d+) prev_prio=\d+ prev_state=(\S+) ==> next_comm=(.*?) next_pid=(\d+)')
wk = re.compile(r'\s*(.+?)-(\d+)\s+\[(\d+)\]\s+(\S+)\s+([\d.]+): sched_wakeup: comm=(.*?) pid=(\d+) prio=\d+ target_cpu=(\d+)')
lines = open(path).read().split('\n')
ev = []
i = 0
while i < len(lines):
    l = lines[i]
    m = sw.match(l)
    if m:
        ev.append(('sw', float(m.group(4)), int(m.group(3)), int(m.group(6)), m.group(7), m.group(8), int(m.group(9))))
        i += 1
        continue
    m = wk.match(l)
    if m:
        j = i + 2
        st = []
        while j < len(lines) and lines[j].startswith(' =>'):
            if '<' in lines[j]: st.append(lines[j].split('<')[1].split('>')[0])
            j += 1
        ev.append(('wk', float(m.group(5)), int(m.group(3)), f"{m.group(1)}-{m.group(2)}", m.group(4), int(m.group(7)), tuple(st)))
        i = j
        continue
    i += 1
busy = collections.Counter()
cur = {}
for e in ev:
    if e[0] == 'sw':
        _, t, cpu, pp, ps, nc, np_ = e
        if cpu in cur and cur[cpu][1].startswith(comm):
            busy[cur[cpu][2]] += t - cur[cpu][0]
        cur[cpu] = (t, nc, np_)
top = busy.most_common(1)[0][0]
addrs = sorted({a for e in ev if e[0] == 'wk' for a in e[6]})
out = subprocess.run(['go', 'tool', 'addr2line', binp], input='\n'.join('0x' + a.lstrip('0') for a in addrs) + '\n', capture_output=True, text=True).stdout.split('\n')
sym = {a: out[2 * k].split('/')[-1] for k, a in enumerate(addrs)}
lastwake, cur, pending = {}, {}, None
why = collections.Counter()
for e in ev:
    if e[0] == 'wk':
        lastwake[e[5]] = e
        continue
    _, t, cpu, pp, ps, nc, np_ = e
    if pp == top and ps.startswith('R'):
        pending = (t, cpu, f"{nc}-{np_}", lastwake.get(np_), {c: cur[c][1] for c in cur if c != cpu})
    if np_ == top and pending:
        t0, c0, by, w, other = pending
        if t - t0 > lim:
            st = ' <- '.join(sym.get(a, '?') for a in w[6][:6]) if w else '-'
            wctx = 'irq' if w and ('h' in w[4] or 's' in w[4]) else 'task'
            print(f"{(t-t0)*1e3:6.2f} ms on cpu{c0}, by {by}, other cpu: {other}; woken by {w[3] if w else '?'} ({wctx}) {st}")
            why[st.split(' <- ')[3] if st.count(' <- ') >= 3 else st] += 1
        pending = None
    cur[cpu] = (t, nc, np_)
print(why)
