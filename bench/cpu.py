#!/usr/bin/env python3
"""CPU time of the benchmark's server processes, from /proc, by program name.

  bench/cpu.py snapshot FILE              records every process's CPU ticks (user + system)
  bench/cpu.py per-request FILE N NAMES   prints the CPU each named program spent since FILE's
                                          snapshot, in microseconds per request of N requests

A process that started after the snapshot counts from zero; one that ended is not counted
(read before stopping the servers). Names are /proc/<pid>/comm: gateway, core, redis-server,
postgres, ...; `machine` is every core's busy time, load generator included.
"""
import json
import os
import sys


def ticks():
    with open("/proc/stat") as f:
        cpu = [int(n) for n in f.readline().split()[1:]]
    # Every core's busy time (all but idle and iowait): the whole machine, load generator too.
    found = {"machine": ["machine", sum(cpu) - cpu[3] - cpu[4]]}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        found[pid] = [name, int(fields[11]) + int(fields[12])]
    return found


def main():
    if sys.argv[1] == "snapshot":
        with open(sys.argv[2], "w") as f:
            json.dump(ticks(), f)
        return
    with open(sys.argv[2]) as f:
        before = json.load(f)
    requests = float(sys.argv[3])
    names = sys.argv[4:]
    spent = dict.fromkeys(names, 0)
    for pid, (name, now) in ticks().items():
        if name in spent and (pid == "machine") == (name == "machine"):
            then = before.get(pid)
            spent[name] += now - (then[1] if then and then[0] == name else 0)
    per_tick = 1e6 / os.sysconf("SC_CLK_TCK")
    print(", ".join(f"{name} {spent[name] * per_tick / requests:.0f} us" for name in names))


if __name__ == "__main__":
    main()
