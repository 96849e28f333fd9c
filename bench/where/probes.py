"""The probes of bench/where that attach to a running server: perf (a profile), strace (system calls by kind and
PostgreSQL round trips) and strace -k (who makes the wake-ups). Each takes a server object with `pid`, `spec` and
`calls(n)`, measures over `n` calls, and leaves the server running."""

import collections
import os
import pathlib
import re
import signal
import subprocess
import threading
import time

from host import process_tree, tasks


def attach(command, ready, timeout=15):
    """Start an attaching tool, wait until `ready()` says it is attached, and return it."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while not ready(lines):
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError(f"{command[0]} did not attach: {b''.join(lines).decode()[-500:]}")
        time.sleep(0.05)
    time.sleep(0.3)
    return process, lines, reader


def detach(process, reader):
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    reader.join(timeout=5)


def perf_profile(server, n, workdir):
    data = workdir / f"perf.{server.spec['short']}.data"
    # perf says nothing when it has attached; it has once its output file exists, and a moment later it samples.
    process, _, reader = attach(["perf", "record", "-q", "-e", "cpu-clock", "-F", "4999", "-g", "-p",
                                 str(server.pid), "-o", str(data)], lambda _: data.exists())
    time.sleep(0.7)
    server.calls(n)
    detach(process, reader)
    report = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children", "-g", "none",
                             "--sort", "sym", "--percent-limit", "0"], capture_output=True, text=True).stdout
    symbols = []
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+\[(.)\]\s+(.*\S)", line)
        if m:
            symbols.append((float(m.group(1)), m.group(2), m.group(3)))
    kernel = sum(p for p, kind, _ in symbols if kind == "k")
    report = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children", "-g", "none",
                             "--sort", "dso", "--percent-limit", "1"], capture_output=True, text=True).stdout
    dsos = []
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(.*\S)", line)
        if m:
            dsos.append((float(m.group(1)), m.group(2)))
    return {"symbols": symbols, "kernel": kernel, "dsos": dsos, "components": components(data)}


def components(data):
    """Share of samples by where they fell: kernel samples by the system call they are under, user samples by the
    crate (Rust), package (Go) or library of the function that was running."""
    script = subprocess.run(["perf", "script", "-i", str(data), "-F", "ip,sym,dso"], capture_output=True,
                            text=True).stdout
    shares, total = collections.Counter(), 0
    for sample in script.split("\n\n"):
        frames = [re.match(r"\s*[0-9a-f]+ (.*?)(?:\+0x[0-9a-f]+)? \((.*)\)$", line)
                  for line in sample.strip().splitlines()]
        frames = [f for f in frames if f]
        if not frames:
            continue
        total += 1
        symbol, dso = frames[0].group(1), frames[0].group(2)
        if "kernel" in dso:
            calls = [re.search(r"__(?:x64|se)_sys_(\w+)", f.group(1)) for f in frames]
            found = next((c.group(1) for c in calls if c), None)
            shares[f"kernel: {found}" if found else "kernel: outside system calls (scheduling, interrupts)"] += 1
        elif "libc.so" in dso:
            what = "memmove/memcpy" if re.search(r"mem(move|cpy)", symbol) else (
                "malloc/free" if re.search(r"malloc|free|_int_|realloc|calloc", symbol) else "other")
            shares[f"libc: {what}"] += 1
        else:
            bare = symbol.lstrip("<&").removeprefix("mut ").removeprefix("dyn ")
            if "::" in bare:
                shares[bare.split("::")[0]] += 1
            elif re.match(r"[\w/.-]+\.", bare):
                # A Go symbol: the package path runs to the first dot after its last slash.
                shares[bare[: bare.index(".", bare.rfind("/", 0, bare.find("(") % (len(bare) + 1)) + 1)]] += 1
            elif re.search(r"perf-\d+\.map|\[JIT\]", dso):
                shares["JIT-compiled code"] += 1
            else:
                shares[pathlib.Path(dso).name or dso] += 1
    return [(100 * count / total, name) for name, count in shares.most_common()] if total else []


# ---------------------------------------------------------------- 3. strace


LINE = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(.*)$")
CALL = re.compile(r"^(\w+)\((.*)$")
RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
RET = re.compile(r"\)\s+=\s+(-?\d+|\?)")
FD = re.compile(r"^(\d+)<(.*?)>(?:,|\)|$)")

READS = {"read", "recvfrom", "recvmsg", "readv"}
WRITES = {"write", "sendto", "sendmsg", "writev"}


def kind_of(name, args):
    if name == "futex":
        op = re.search(r"FUTEX_(\w+?)(?:_PRIVATE)?(?:\||,)", args)
        return f"futex {op.group(1).lower()}" if op else "futex"
    return name


def attached_all(lines, want):
    """Whether strace says it has attached every thread in `want` ("Process N attached" for each, or "Process N
    attached with K threads" at once)."""
    attached, threads = set(), 0
    for line in lines:
        m = re.search(rb"Process (\d+) attached(?: with (\d+) threads)?", line)
        if m:
            attached.add(int(m.group(1)))
            threads = max(threads, int(m.group(2) or 0))
    return want <= attached or (threads >= len(want) and attached)


def strace_window(server, n, workdir, pg_port):
    trace = workdir / f"strace.{server.spec['short']}.txt"
    want = set()
    for p in process_tree(server.pid):
        want |= set(tasks(p))

    def ready(lines):
        return attached_all(lines, want)

    # -s 1: the first byte of what is written, which on a PostgreSQL socket names the flight's first message.
    process, _, reader = attach(["strace", "-f", "-ttt", "-yy", "-s", "1", "-o", str(trace), "-p",
                                 str(server.pid)], ready)
    t0 = time.time()
    server.calls(n)
    t1 = time.time()
    time.sleep(0.2)
    detach(process, reader)

    kinds = collections.Counter()
    fd_kinds = collections.Counter()
    pending = {}
    ops = collections.defaultdict(list)
    pg_tag = f":{pg_port}]"

    def finished(name, args, ret, when):
        inside = t0 <= when <= t1
        if not inside:
            return
        fd = FD.match(args)
        target = fd.group(2) if fd else ""
        if name not in READS | WRITES or not target:
            return
        direction = "write" if name in WRITES else "read"
        if "eventfd" in target:
            fd_kinds[f"{direction} eventfd"] += 1
        elif target.startswith("pipe:"):
            fd_kinds[f"{direction} pipe"] += 1
        elif pg_tag in target:
            fd_kinds[f"{direction} PostgreSQL"] += 1
            if ret is not None and ret > 0:
                first = re.search(r'"([A-Za-z])', args) if direction == "write" else None
                ops[target].append((direction, first.group(1) if first else "?"))
            elif direction == "read":
                fd_kinds["read PostgreSQL without data"] += 1

    for line in trace.read_text(errors="replace").splitlines():
        m = LINE.match(line)
        if not m:
            continue
        pid, when, rest = int(m.group(1)), float(m.group(2)), m.group(3)
        resumed = RESUMED.match(rest)
        if resumed:
            name, args, when = pending.pop(pid, (resumed.group(1), "", when))
            r = RET.search(resumed.group(2))
            ret = int(r.group(1)) if r and r.group(1) != "?" else None
            finished(name, args, ret, when)
            continue
        call = CALL.match(rest)
        if not call:
            continue
        name, args = call.group(1), call.group(2)
        if t0 <= when <= t1:
            kinds[kind_of(name, args)] += 1
        if rest.endswith("<unfinished ...>"):
            pending[pid] = (name, args, when)
            continue
        r = RET.search(rest)
        ret = int(r.group(1)) if r and r.group(1) != "?" else None
        finished(name, args, ret, when)

    flights = collections.Counter()
    for seq in ops.values():
        previous = "read"
        for direction, first in seq:
            if direction == "write" and previous != "write":
                flights[first] += 1
            previous = direction
    return {"kinds": kinds, "fd_kinds": fd_kinds, "flights": flights, "sockets": len(ops), "n": n}


def wake_stacks(server, n, workdir):
    """User stacks of every eventfd write and futex wake the server makes over `n` calls, grouped.

    strace -k stops unwinding at the first Rust frame here, so this asks perf instead: the write and futex
    tracepoints, filtered to the server's eventfds and to FUTEX_WAKE, with DWARF unwinding of the user stack."""
    eventfds = []
    for fd in pathlib.Path(f"/proc/{server.pid}/fd").iterdir():
        try:
            if os.readlink(fd) == "anon_inode:[eventfd]":
                eventfds.append(int(fd.name))
        except OSError:
            pass
    data = workdir / f"wakes.{server.spec['short']}.data"
    # FUTEX_WAKE and FUTEX_WAKE_BITSET, each with and without FUTEX_PRIVATE_FLAG (perf filters know no `&`).
    events = ["-e", "syscalls:sys_enter_futex", "--filter", "op == 1 || op == 129 || op == 10 || op == 138"]
    if eventfds:
        events += ["-e", "syscalls:sys_enter_write", "--filter", " || ".join(f"fd == {fd}" for fd in eventfds)]
    process, errors, reader = attach(["perf", "record", "-q", *events, "--call-graph", "dwarf,32768", "-p",
                                 str(server.pid), "-o", str(data)], lambda _: data.exists())
    time.sleep(0.7)
    if process.poll() is not None:
        raise RuntimeError(f"perf record stopped: {b''.join(errors).decode()[-500:]}")
    server.calls(n)
    detach(process, reader)
    script = subprocess.run(["perf", "script", "-i", str(data), "-F", "event,ip,sym,dso"], capture_output=True,
                            text=True).stdout
    groups = collections.Counter()
    for sample in script.split("\n\n"):
        lines = [line.strip() for line in sample.strip().splitlines()]
        if not lines:
            continue
        kind = "eventfd write" if "sys_enter_write" in lines[0] else "futex wake"
        frames = []
        for line in lines[1:]:
            m = re.match(r"[0-9a-f]+ (.*?)(?:\+0x[0-9a-f]+)? \((.*)\)$", line)
            # libc's syscall wrappers and the kernel say nothing about who made the call.
            if m and "libc.so" not in m.group(2) and "kernel" not in m.group(2):
                frames.append(re.sub(r"::h[0-9a-f]{16}$", "", m.group(1)))
        groups[(kind, " <- ".join(frames[:14]))] += 1
    return {"n": n, "groups": groups.most_common(12)}
