"""Where a stdio tool call goes: system calls, PostgreSQL round trips, wake-ups, allocations and CPU per call, and
a perf profile, for pgmcp and the peer MCP servers on one throwaway cluster (run through measure.sh).

usage: measure.py --pgmcp BINARY --shim alloccount.so [--peers DIR] [--calls N] [--warmup N] [--perf-calls N]
                  [--servers a,b] [--output FILE] [--no-perf]

Every server answers the same point query, `SELECT abalance FROM pgbench_accounts WHERE aid = $1` (peers without
bind parameters get the literal), from a raw JSON-RPC client (one line out, one line back), sequentially. Each
server process is started once and warmed up; then each measure looks at windows of N calls only, so start-up and
warm-up are left out:

1. clean (3 windows, medians): server CPU (sum over the server's threads of /proc/<pid>/task/*/schedstat's run
   time, in ns), PostgreSQL CPU (the same over every process of the cluster), voluntary and involuntary context
   switches of the server's threads (/proc/<pid>/task/*/status), statements the server ran (pg_stat_statements),
   latency as the client sees it (p50, p99, mean);
2. perf: `perf record -e cpu-clock -g -p <pid>` over one longer window (--perf-calls): top symbols by self share,
   kernel/user split;
3. strace: `strace -f -ttt -yy -p <pid>` attached after warm-up; the system calls whose entry time falls inside the
   window, by kind. The PostgreSQL sockets are recognised by their peer port (-yy); a round trip is a flight: a
   maximal run of data-carrying writes on one PostgreSQL socket between two data-carrying reads of it, so writes
   the server makes without waiting for an answer count as one; the first byte written names the flight's first
   protocol message. Under ptrace the server runs slower, which can change how often a read finds nothing;
4. pgmcp only, over a short window: the user stacks of every eventfd write and futex wake (perf on the syscall
   tracepoints with DWARF unwinding; `strace -k` stops at the first Rust frame);
5. pgmcp only, restarted under LD_PRELOAD=alloccount.so: calls to the malloc family over a window.
"""

import argparse
import collections
import json
import os
import pathlib
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from host import DATABASE, SCALE, Cluster, clean_env, cpu_ns, load_average, process_tree, switches, tasks
from probes import perf_profile, strace_window, wake_stacks

POINT_SQL = "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
ACCOUNTS = SCALE * 100_000
CALL_TIMEOUT_S = 30
CLEAN_WINDOWS = 3
# The frontend messages a flight can open with (PostgreSQL protocol, section 55.7).
MESSAGES = {"Q": "Query", "P": "Parse", "B": "Bind", "E": "Execute", "S": "Sync", "C": "Close", "D": "Describe",
            "H": "Flush", "X": "Terminate"}
STACK_CALLS = 100


# ---------------------------------------------------------------- the servers and the raw client


def compact(value):
    return json.dumps(value, separators=(",", ":"))


def package_version(directory):
    try:
        return json.loads((directory / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def server_specs(pgmcp, cluster, peers_dir, floor):
    url = cluster.url()
    specs = [{
        "name": "pgmcp", "short": "pgmcp", "command": [pgmcp, "serve", "--database-url", url],
        "env": {"PGMCP_LOG": "warn"}, "tool": "execute_query", "params": True,
    }]
    if floor is not None:
        specs.append({
            "name": "stdio floor (floor.c: libpq, no MCP)", "short": "floor", "command": [floor, url],
            "env": {}, "tool": "execute_query", "params": True,
        })
    if peers_dir is None:
        return specs, []
    modules = peers_dir / "node_modules"
    missing = []
    toolbox = modules / "@toolbox-sdk/server-linux-x64"
    if package_version(toolbox):
        specs.append({
            "name": f"MCP Toolbox {package_version(toolbox)}", "short": "Toolbox",
            "command": [toolbox / "bin/toolbox", "--prebuilt", "postgres", "--stdio"],
            "env": {"POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": str(cluster.port), "POSTGRES_DATABASE": DATABASE,
                    "POSTGRES_USER": "postgres", "POSTGRES_PASSWORD": "unused-trust-auth"},
            "tool": "execute_sql", "params": False,
        })
    else:
        missing.append("MCP Toolbox")
    dbhub = modules / "@bytebase/dbhub"
    if package_version(dbhub):
        specs.append({
            "name": f"DBHub {package_version(dbhub)}", "short": "DBHub",
            "command": ["node", dbhub / "dist/index.js", "--transport", "stdio", "--dsn", url + "?sslmode=disable"],
            "env": {}, "tool": "execute_sql", "params": False,
        })
    else:
        missing.append("DBHub")
    reference = modules / "@modelcontextprotocol/server-postgres"
    if package_version(reference):
        specs.append({
            "name": f"server-postgres {package_version(reference)}", "short": "server-postgres",
            "command": ["node", reference / "dist/index.js", url], "env": {}, "tool": "query", "params": False,
        })
    else:
        missing.append("server-postgres")
    return specs, missing


class Server:
    """A stdio MCP server spoken to with raw JSON-RPC lines; its stderr goes to a file so it never blocks."""

    def __init__(self, spec, workdir, extra_env=None):
        self.spec = spec
        self.stderr = open(workdir / f"{spec['short']}.stderr", "ab")
        env = {**clean_env(), **spec["env"], **(extra_env or {})}
        self.process = subprocess.Popen([str(c) for c in spec["command"]], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.stderr, env=env)
        self.pid = self.process.pid
        self.next_id = 1
        self.rng = random.Random(17)
        self.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                    "clientInfo": {"name": "where-measure", "version": "1"}})
        self.write({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def write(self, message):
        self.process.stdin.write((compact(message) + "\n").encode())
        self.process.stdin.flush()

    def request(self, method, params):
        ident = self.next_id
        self.next_id += 1
        self.write({"jsonrpc": "2.0", "id": ident, "method": method, "params": params})
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.spec['short']} closed stdout (see its .stderr file)")
            try:
                answer = json.loads(line)
            except ValueError:
                continue
            if answer.get("id") != ident:
                continue
            if "error" in answer:
                raise RuntimeError(f"{self.spec['short']} {method}: {answer['error']}")
            return answer["result"]
        raise RuntimeError(f"{self.spec['short']}: no answer to {method} in {CALL_TIMEOUT_S} s")

    def call(self):
        aid = self.rng.randint(1, ACCOUNTS)
        if self.spec["params"]:
            args = {"sql": POINT_SQL, "params": [aid]}
        else:
            args = {"sql": POINT_SQL.replace("$1", str(aid))}
        result = self.request("tools/call", {"name": self.spec["tool"], "arguments": args})
        if result.get("isError"):
            raise RuntimeError(f"{self.spec['short']}: the call failed: {compact(result)[:300]}")

    def calls(self, n):
        for _ in range(n):
            self.call()

    def stop(self):
        try:
            self.process.stdin.close()
            self.process.wait(timeout=10)
        except (subprocess.TimeoutExpired, BrokenPipeError):
            self.process.kill()
            self.process.wait()
        self.stderr.close()


# ---------------------------------------------------------------- 1. clean windows


def clean_windows(server, cluster, n):
    runs = []
    by_statement = collections.Counter()
    for _ in range(CLEAN_WINDOWS):
        pids = process_tree(server.pid)
        statements0 = cluster.statements()
        cpu0 = sum(cpu_ns(p) for p in pids)
        sw0 = [sum(x) for x in zip(*(switches(p) for p in pids))]
        pg0 = cluster.cpu_ns()
        latencies = []
        for _ in range(n):
            started = time.perf_counter()
            server.call()
            latencies.append(time.perf_counter() - started)
        latencies.sort()
        cpu1 = sum(cpu_ns(p) for p in pids)
        sw1 = [sum(x) for x in zip(*(switches(p) for p in pids))]
        pg1 = cluster.cpu_ns()
        statements1 = cluster.statements()
        for text, (calls, total) in statements1.items():
            before = statements0.get(text, (0, 0.0))
            by_statement[(text, "calls")] += calls - before[0]
            by_statement[(text, "ms")] += total - before[1]
        runs.append({
            "wall_ms": sum(latencies) * 1000 / n,
            "p50_ms": latencies[n // 2] * 1000,
            "p99_ms": latencies[n * 99 // 100] * 1000,
            "cpu_ms": (cpu1 - cpu0) / 1e6 / n,
            "pg_cpu_ms": sum(pg1[p] - pg0[p] for p in pg0.keys() & pg1.keys()) / 1e6 / n,
            "voluntary": (sw1[0] - sw0[0]) / n,
            "involuntary": (sw1[1] - sw0[1]) / n,
            # The reads of pg_stat_statements itself are left out by their text; what is left is the server's.
            "statements": (sum(c for c, _ in statements1.values()) - sum(c for c, _ in statements0.values())) / n,
        })
    threads = sum(len(tasks(p)) for p in process_tree(server.pid))
    calls = n * CLEAN_WINDOWS
    statements = sorted(
        ((text, by_statement[(text, "calls")] / calls, by_statement[(text, "ms")] / calls)
         for text, kind in by_statement if kind == "calls" and by_statement[(text, "calls")] >= calls / 10),
        key=lambda s: -s[2])
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]} | {
        "threads": threads, "cpu_ms_range": (min(r["cpu_ms"] for r in runs), max(r["cpu_ms"] for r in runs)),
        "by_statement": statements}

# ---------------------------------------------------------------- 5. allocations


def allocations(spec, workdir, shim, n, warmup):
    counters = workdir / "alloccount.bin"
    counters.unlink(missing_ok=True)
    server = Server(spec, workdir, {"LD_PRELOAD": str(shim), "ALLOCCOUNT_FILE": str(counters)})
    try:
        server.calls(warmup)

        def read():
            raw = counters.read_bytes()
            return [int.from_bytes(raw[i * 8 : i * 8 + 8], "little") for i in range(6)]

        before = read()
        server.calls(n)
        after = read()
    finally:
        server.stop()
    d = [(a - b) / n for a, b in zip(after, before)]
    return {"allocations": d[0] + d[1] + d[2] + d[3], "frees": d[4], "bytes": d[5], "reallocs": d[2]}


# ---------------------------------------------------------------- report


def fmt(value, digits=1):
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def table(results, names):
    rows = []

    def row(label, values, digits=1):
        rows.append("| " + label + " | " + " | ".join(fmt(v, digits) for v in values) + " |")

    get = lambda section, key: [results[n].get(section, {}).get(key) for n in names]
    rows.append("| per call | " + " | ".join(names) + " |")
    rows.append("|---|" + "---:|" * len(names))
    row("server CPU, ms (median of 3 windows)", get("clean", "cpu_ms"), 3)
    row("PostgreSQL CPU, ms (all backends)", get("clean", "pg_cpu_ms"), 3)
    row("latency p50, ms (client included)", get("clean", "p50_ms"), 3)
    row("latency p99, ms", get("clean", "p99_ms"), 3)
    row("wall time, mean, ms", get("clean", "wall_ms"), 3)
    row("statements run (pg_stat_statements)", get("clean", "statements"), 2)
    row("PostgreSQL round trips (flights)", [results[n].get("strace", {}).get("flights_per_call") for n in names], 2)
    firsts = sorted({k for n in names for k in results[n].get("strace", {}).get("flights_by_first", {})})
    for first in firsts:
        values = [results[n].get("strace", {}).get("flights_by_first", {}).get(first) for n in names]
        if max(v or 0 for v in values) >= 0.01:
            row(f"  flights opening with {MESSAGES.get(first, first)}",
                [v or 0 if results[n].get("strace") else None for n, v in zip(names, values)], 2)
    for key, label in [("write PostgreSQL", "  writes to PostgreSQL sockets"),
                       ("read PostgreSQL", "  reads from PostgreSQL sockets"),
                       ("read PostgreSQL without data", "  of which found nothing (EAGAIN)")]:
        row(label, [results[n]["strace"]["fd"].get(key, 0) if results[n].get("strace") else None for n in names], 2)
    row("voluntary context switches (wake-ups)", get("clean", "voluntary"), 2)
    row("involuntary context switches", get("clean", "involuntary"), 2)
    row("server threads", get("clean", "threads"), 0)
    row("**system calls, total**", [results[n].get("strace", {}).get("total") for n in names], 1)
    kinds = collections.Counter()
    for n in names:
        kinds.update(results[n].get("strace", {}).get("kinds", {}))
    for kind, _ in kinds.most_common():
        values = [results[n]["strace"]["kinds"].get(kind, 0) if results[n].get("strace") else None for n in names]
        if max(v or 0 for v in values) >= 0.05:
            row(f"  {kind}", values, 2)
    for key, label in [("write eventfd", "eventfd writes"), ("read eventfd", "eventfd reads"),
                       ("read pipe", "reads from stdin"), ("write pipe", "writes to stdout")]:
        row(label, [results[n]["strace"]["fd"].get(key, 0) if results[n].get("strace") else None for n in names], 2)
    row("heap allocations (malloc family)", get("alloc", "allocations"), 1)
    row("  of which realloc", get("alloc", "reallocs"), 1)
    row("bytes requested from the heap", get("alloc", "bytes"), 0)
    row("perf samples in the kernel, %", [results[n].get("perf", {}).get("kernel") for n in names], 0)
    return "\n".join(rows)


def profile_summary(results, names, top):
    out = []
    for n in names:
        perf = results[n].get("perf")
        if not perf:
            continue
        out.append(f"**{n}**: kernel {perf['kernel']:.0f} %, user {100 - perf['kernel']:.0f} % of cpu-clock samples; "
                   "by object: " + ", ".join(f"{d} {p:.0f} %" for p, d in perf["dsos"][:6]))
        out.append("")
        out.append("By where the samples fell (kernel: by system call; user: by crate, package or library): " + ", ".join(
            f"{name} {share:.1f} %" for share, name in perf["components"] if share >= 1) + ".")
        out.append("")
        out.append("| self % | | symbol |")
        out.append("|---:|---|---|")
        for percent, kind, symbol in perf["symbols"][: top if n == names[0] else top // 2]:
            symbol = re.sub(r"::h[0-9a-f]{16}$", "", symbol)
            out.append(f"| {percent:.1f} | {'kernel' if kind == 'k' else 'user'} | `{symbol[:110]}` |")
        out.append("")
    return "\n".join(out)


def statements_summary(results, names):
    out = ["Statements per call and PostgreSQL's execution time for them (pg_stat_statements, over the three clean "
           "windows; the execution time excludes parsing, planning and the protocol):", ""]
    out.append("| server | statement | runs per call | execution ms per call |")
    out.append("|---|---|---:|---:|")
    for n in names:
        for text, per_call, ms in results[n].get("clean", {}).get("by_statement", []):
            out.append(f"| {n} | `{text}` | {per_call:.2f} | {ms:.4f} |")
    return "\n".join(out) + "\n"


def stacks_summary(results, names):
    out = []
    for n in names:
        stacks = results[n].get("stacks")
        if not stacks:
            continue
        out.append(f"{n}: eventfd writes and futex wakes over {stacks['n']} calls (perf, syscall tracepoints, DWARF "
                   "unwinding; innermost frame first):")
        out.append("")
        for (kind, frames), count in stacks["groups"]:
            out.append(f"- {count / stacks['n']:.2f} per call, {kind}: `{frames[:1500]}`")
        out.append("")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pgmcp", required=True)
    parser.add_argument("--peers", type=pathlib.Path, help="bench/peers, with node_modules installed")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--perf-calls", type=int, default=10000, help="calls in the perf window (more samples)")
    parser.add_argument("--output", type=pathlib.Path)
    parser.add_argument("--no-perf", action="store_true")
    parser.add_argument("--servers", help="comma-separated short names to measure (default: all installed)")
    parser.add_argument("--shim", type=pathlib.Path, required=True)
    parser.add_argument("--floor", type=pathlib.Path, help="the built floor.c, measured beside the servers")
    args = parser.parse_args()

    loads = [load_average()]
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="pgmcp-where-work-"))
    print(f"working files in {workdir}", file=sys.stderr)
    cluster = Cluster()
    results, names = {}, []
    try:
        specs, missing = server_specs(pathlib.Path(args.pgmcp).resolve(), cluster, args.peers,
                                      args.floor.resolve() if args.floor else None)
        if args.servers:
            specs = [s for s in specs if s["short"] in args.servers.split(",")]
        for spec in specs:
            name = spec["short"]
            print(f"{name}: measuring", file=sys.stderr)
            names.append(name)
            results[name] = {}
            try:
                server = Server(spec, workdir)
            except Exception as e:  # noqa: BLE001 - a peer that cannot start is reported, not fatal
                results[name]["error"] = str(e)
                print(f"{name}: {e}", file=sys.stderr)
                continue
            try:
                server.calls(args.warmup)
                results[name]["clean"] = clean_windows(server, cluster, args.calls)
                loads.append(load_average())
                if not args.no_perf:
                    results[name]["perf"] = perf_profile(server, args.perf_calls, workdir)
                server.calls(args.warmup // 3)
                traced = strace_window(server, args.calls, workdir, cluster.port)
                results[name]["strace"] = {
                    "kinds": {k: v / traced["n"] for k, v in traced["kinds"].items()},
                    "fd": {k: v / traced["n"] for k, v in traced["fd_kinds"].items()},
                    "total": sum(traced["kinds"].values()) / traced["n"],
                    "flights_per_call": sum(traced["flights"].values()) / traced["n"],
                    "flights_by_first": {k: v / traced["n"] for k, v in traced["flights"].most_common()},
                    "sockets": traced["sockets"],
                }
                if name == "pgmcp":
                    results[name]["stacks"] = wake_stacks(server, STACK_CALLS, workdir)
                loads.append(load_average())
            except Exception as e:  # noqa: BLE001
                results[name]["error"] = str(e)
                print(f"{name}: {e}", file=sys.stderr)
            finally:
                server.stop()
            if name == "pgmcp":
                results[name]["alloc"] = allocations(spec, workdir, args.shim.resolve(), args.calls, args.warmup)
                loads.append(load_average())
    finally:
        cluster.stop()

    versions = subprocess.run([args.pgmcp, "--version"], capture_output=True, text=True).stdout.strip()
    header = [
        f"- {args.calls:,} sequential point-query calls per window after {args.warmup} warm-up calls, raw JSON-RPC "
        f"client over stdio; PostgreSQL {cluster.version} (scale {SCALE}) on loopback TCP; {os.cpu_count()} cores; "
        f"load average (1 min) {min(loads):.1f}–{max(loads):.1f} during the run",
        "- servers: " + "; ".join(versions if s["short"] == "pgmcp" else s["name"]
                                        for s in specs) + (f"; not installed: {', '.join(missing)}" if missing else ""),
    ]
    errors = [f"- {n}: not measured: {results[n]['error']}" for n in names if "error" in results[n]]
    text = "\n".join(header + errors) + "\n\n" + table(results, names) + "\n\n" + statements_summary(
        results, names) + "\n" + profile_summary(results, names, 20) + "\n" + stacks_summary(results, names)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
        (args.output.with_suffix(".json")).write_text(json.dumps(results, indent=1, default=str))
    shutil.rmtree(workdir, ignore_errors=True) if not os.environ.get("WHERE_KEEP") else None


if __name__ == "__main__":
    main()
