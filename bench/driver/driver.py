"""Drives MCP servers over stdio with the official Python MCP SDK, for pgmcp's benchmark (scenario 7).

usage: driver.py SPEC_JSON   (printed result: one JSON document on stdout)

SPEC_JSON names the servers to run and the plan: {"servers": [{"name", "version", "command", "args", "env",
"tool", "point_sql", "uses_params", "limit_arg"}], "accounts", "reps", "point_calls", "wide_calls", "cold_starts",
"budget_s", "huge_timeout_s", "wide": [{"label", "sql"}], "huge": [{"label", "sql"}]}.

The client is set up so that it is not what is measured: no response cache, no per-call output-schema
validation, and the SDK's stdio transport reads the server's stdout line by line. Server CPU and memory are read
from /proc for the whole process tree the SDK spawned (a launcher such as npx would be counted too).
"""

import asyncio
import json
import os
import random
import re
import sys
import time

import anyio
import mcp.client.stdio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

TICKS = os.sysconf("SC_CLK_TCK")


def children(pid):
    found = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return found


def server_tree():
    """Every process below this driver: the server the SDK spawned and whatever it spawned."""
    tree, todo = [], children(os.getpid())
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children(pid))
    return tree


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / TICKS


def status_mib(pids, field):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
        except (OSError, ValueError):
            pass
    return total / 1024


class WholeLines:
    """Stands in for the SDK's TextReceiveStream: yields only complete lines.

    The SDK's stdio reader re-joins and re-splits its pending buffer on every chunk, which is quadratic in the length
    of one line: a 150 MB answer then costs the client minutes, and the benchmark would measure the client. Fed whole
    lines, its buffer stays empty and reading is linear.
    """

    def __init__(self, stream, encoding="utf-8", errors="strict"):
        self.stream, self.encoding, self.errors = stream, encoding or "utf-8", errors or "strict"

    def __aiter__(self):
        return self._lines()

    async def _lines(self):
        pending = []
        async for chunk in self.stream:
            end = chunk.rfind(b"\n")
            if end < 0:
                pending.append(chunk)
                continue
            pending.append(chunk[: end + 1])
            yield undecoded_if_huge(b"".join(pending)).decode(self.encoding, self.errors)
            pending = [chunk[end + 1 :]] if end + 1 < len(chunk) else []
        if pending:
            yield undecoded_if_huge(b"".join(pending)).decode(self.encoding, self.errors)


# An answer line above this size is measured (bytes, arrival time) but not decoded: turning a 190 MB answer into the
# SDK's Python objects took the driver to 19.7 GB and the kernel's OOM killer, which measures the client, not the
# server, and endangers everything else on the machine.
HUGE_LINE_BYTES = 32 * 1024 * 1024
HUGE_ANSWERS = []


def undecoded_if_huge(line):
    if len(line) <= HUGE_LINE_BYTES:
        return line
    HUGE_ANSWERS.append({"bytes": len(line), "at": time.perf_counter()})
    # The response's id is near one end of the line, whichever order the server writes the members in.
    found = re.search(rb'"id"\s*:\s*(\d+)', line[:200]) or re.search(rb'"id"\s*:\s*(\d+)', line[-200:])
    request_id = int(found.group(1)) if found else 0
    stand_in = {"jsonrpc": "2.0", "id": request_id, "result": {"content": [
        {"type": "text", "text": f"(an answer of {len(line)} bytes, not decoded by the bench client)"}]}}
    return (json.dumps(stand_in) + "\n").encode()


mcp.client.stdio.TextReceiveStream = WholeLines


def describe(error):
    """The innermost exceptions of an ExceptionGroup, which is how anyio reports a failure inside the client."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(describe(e) for e in error.exceptions)
    return f"{type(error).__name__}: {error}"[:300]


async def no_validation(_name, _result):
    return None


class Session:
    def __init__(self, server):
        self.server = server

    async def __aenter__(self):
        s = self.server
        env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
        env.update(s.get("env", {}))
        params = StdioServerParameters(command=s["command"], args=s["args"], env=env)
        self.started = time.perf_counter()
        self.client = Client(params, mode="legacy", cache=None, read_timeout_seconds=s.get("timeout_s", 600))
        await self.client.__aenter__()
        self.client.session.validate_tool_result = no_validation
        self.pids = server_tree()
        return self

    async def __aexit__(self, *exc):
        await self.client.__aexit__(*exc)

    def tree(self):
        # A server may spawn workers after start-up, so the tree is re-read when measuring.
        return server_tree() or self.pids

    async def call(self, sql, params=None, limit=None):
        s = self.server
        args = {s.get("sql_arg", "sql"): sql}
        if params is not None:
            args["params"] = params
        if limit is not None and s.get("limit_arg"):
            args[s["limit_arg"]] = limit
        result = await self.client.call_tool(s["tool"], args)
        if result.is_error:
            text = result.content[0].text if result.content else ""
            raise RuntimeError(f"{s['tool']} failed: {text[:300]}")
        return result


def wire_bytes(result):
    return len(result.model_dump_json(by_alias=True, exclude_none=True))


def rows_in(result):
    if result.structured_content and "row_count" in result.structured_content:
        return result.structured_content["row_count"]
    try:
        value = json.loads(result.content[0].text)
    except (ValueError, IndexError, AttributeError):
        return None
    if len(result.content) > 1:
        return len(result.content)
    if isinstance(value, list):
        # One JSON object per content block (MCP Toolbox) or one array in one block.
        return len(value) if len(result.content) == 1 else len(result.content)
    if isinstance(value, dict):
        for key in ("rows", "data", "result"):
            inner = value.get(key)
            if isinstance(inner, list):
                return len(inner)
            if isinstance(inner, dict) and isinstance(inner.get("rows"), list):
                return len(inner["rows"])
    return None


def point_sql(server, aid):
    if server.get("uses_params"):
        return server["point_sql"], [aid]
    return server["point_sql"].replace("$1", str(aid)), None


async def bench_server(server, plan):
    out = {"name": server["name"], "version": server.get("version", "")}
    try:
        out["startup"] = await startup(server, plan)
        out["point"] = await point(server, plan)
        out["wide"] = await wide(server, plan)
        out["huge"] = await huge(server, plan)
    except Exception as e:  # one peer failing must not stop the others
        out["error"] = describe(e)
    return out


async def startup(server, plan):
    runs = []
    for _ in range(plan["cold_starts"]):
        started = time.perf_counter()
        async with Session(server) as s:
            await s.client.list_tools()
            cold_ms = (time.perf_counter() - started) * 1000
            await anyio.sleep(0.5)
            runs.append({"cold_ms": cold_ms, "idle_rss_mib": status_mib(s.tree(), "VmRSS")})
    return runs


async def point(server, plan):
    runs = []
    rng = random.Random(42)
    for _ in range(plan["reps"]):
        async with Session(server) as s:
            for _ in range(plan["warmup_calls"]):
                sql, params = point_sql(server, rng.randint(1, plan["accounts"]))
                await s.call(sql, params)
            tree = s.tree()
            cpu0 = cpu_seconds(tree)
            latencies = []
            started = time.perf_counter()
            while len(latencies) < plan["point_calls"] and time.perf_counter() - started < plan["budget_s"]:
                sql, params = point_sql(server, rng.randint(1, plan["accounts"]))
                t = time.perf_counter()
                await s.call(sql, params)
                latencies.append(time.perf_counter() - t)
            wall = time.perf_counter() - started
            cpu = cpu_seconds(tree) - cpu0
            latencies.sort()
            runs.append({
                "calls_per_s": len(latencies) / wall,
                "p50_ms": latencies[len(latencies) // 2] * 1000,
                "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
                "cpu_ms_per_call": cpu * 1000 / len(latencies),
            })
    return runs


async def wide(server, plan):
    results = {}
    for query in plan["wide"]:
        runs = []
        async with Session(server) as s:
            await s.call(query["sql"], limit=10000)
            tree = s.tree()
            for _ in range(plan["reps"]):
                cpu0 = cpu_seconds(tree)
                latencies, size, rows = [], 0, None
                for _ in range(plan["wide_calls"]):
                    t = time.perf_counter()
                    result = await s.call(query["sql"], limit=10000)
                    latencies.append(time.perf_counter() - t)
                    size, rows = wire_bytes(result), rows_in(result)
                latencies.sort()
                runs.append({
                    "p50_ms": latencies[len(latencies) // 2] * 1000,
                    "bytes": size,
                    "rows": rows,
                    "cpu_ms_per_call": (cpu_seconds(tree) - cpu0) * 1000 / len(latencies),
                })
        results[query["label"]] = runs
    return results


async def huge(server, plan):
    results = {}
    for query in plan["huge"]:
        try:
            async with Session(server) as s:
                await s.call("SELECT 1")
                t = time.perf_counter()
                HUGE_ANSWERS.clear()
                with anyio.fail_after(plan["huge_timeout_s"]):
                    result = await s.call(query["sql"])
                elapsed = (time.perf_counter() - t) * 1000
                if HUGE_ANSWERS:
                    # Time to the whole answer on the pipe; rows uncounted, since the answer is not decoded.
                    elapsed = (HUGE_ANSWERS[-1]["at"] - t) * 1000
                    size, rows = HUGE_ANSWERS[-1]["bytes"], None
                else:
                    size, rows = wire_bytes(result), rows_in(result)
                results[query["label"]] = {
                    "time_ms": elapsed,
                    "bytes": size,
                    "rows": rows,
                    "peak_rss_mib": status_mib(s.tree(), "VmHWM"),
                }
        except BaseException as e:  # a timeout, a crash or an out-of-memory server is a result, not an abort
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            results[query["label"]] = {"error": describe(e)}
    return results


async def main(spec_path):
    with open(spec_path) as f:
        spec = json.load(f)
    plan = spec["plan"]
    results = []
    for server in spec["servers"]:
        print(f"  driving {server['name']}", file=sys.stderr, flush=True)
        results.append(await bench_server(server, plan))
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
