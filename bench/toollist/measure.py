"""Bytes and o200k_base tokens of MCP servers' tool lists (run through measure.sh, which installs what it needs).

usage: measure.py --pgmcp BINARY [--peers] [--dump DIR]

Starts `pgmcp demo` (a throwaway cluster with the sample database, served read-only on stdio, one profile, no
curated tools), then each installed peer against the same database, and asks each for `tools/list` with a raw
JSON-RPC client (lines in, lines out). Reported per server:
- the whole `tools/list` response, as the server wrote it (bytes, tokens);
- the model-facing part: each tool's name, description and input schema, as a client hands them to a model API
  (`[{"name", "description", "input_schema"}]`, compact JSON), bytes and tokens; and the tokens of the
  descriptions alone and of the output schemas alone, which no model API takes but every client downloads.

The tokenizer is tiktoken's o200k_base. tiktoken fetches its vocabulary from a host this machine cannot reach; the
same file is rebuilt from the npm package js-tiktoken (which ships it in its own compressed form) and handed to
tiktoken through its cache, where tiktoken checks it against the SHA-256 it expects before using it.
"""

import argparse
import hashlib
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
BENCH = HERE.parent
CACHE = HERE / ".cache"
JS_TIKTOKEN = "js-tiktoken@1.0.21"
O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
TIMEOUT_S = 60


def o200k_base():
    os.environ["TIKTOKEN_CACHE_DIR"] = str(CACHE)
    cached = CACHE / hashlib.sha1(O200K_URL.encode()).hexdigest()
    if not cached.exists():
        CACHE.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["npm", "pack", "--silent", JS_TIKTOKEN], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
            (tarball,) = pathlib.Path(tmp).glob("js-tiktoken-*.tgz")
            subprocess.run(["tar", "xzf", tarball.name], cwd=tmp, check=True)
            source = (pathlib.Path(tmp) / "package/dist/ranks/o200k_base.cjs").read_text()
        ranks = json.loads(source[source.index("{") : source.rindex("}") + 1])["bpe_ranks"]
        # js-tiktoken's form: each line is a tag, the rank of its first token, then base64 tokens of consecutive
        # ranks. tiktoken's form: one `base64 rank` line per token, by rank.
        by_rank = {}
        for line in filter(None, ranks.split("\n")):
            _, first, *tokens = line.split(" ")
            for offset, token in enumerate(tokens):
                by_rank[int(first) + offset] = token
        cached.write_text("".join(f"{by_rank[rank]} {rank}\n" for rank in sorted(by_rank)))
    import tiktoken

    # Raises when the rebuilt file is not byte for byte the one tiktoken expects.
    return tiktoken.get_encoding("o200k_base")


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Server:
    """A stdio MCP server spoken to with raw JSON-RPC lines."""

    def __init__(self, command, env=None):
        self.process = subprocess.Popen(
            [str(part) for part in command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        self.next_id = 1

    def send(self, method, params=None, notification=False):
        message = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        if not notification:
            message["id"] = self.next_id
            self.next_id += 1
        self.process.stdin.write((compact(message) + "\n").encode())
        self.process.stdin.flush()
        if notification:
            return None
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"the server closed stdout: {self.process.stderr.read().decode()[-2000:]}")
            try:
                answer = json.loads(line)
            except ValueError:
                continue  # a server that logs to stdout
            if answer.get("id") == message["id"]:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return line.rstrip(b"\n"), answer["result"]
        raise RuntimeError(f"no answer to {method} in {TIMEOUT_S} s")

    def tool_list(self):
        self.send(
            "initialize",
            {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "toollist-measure", "version": "1"},
            },
        )
        self.send("notifications/initialized", notification=True)
        return self.send("tools/list", {})

    def stop(self):
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_demo(binary):
    """`pgmcp demo` on stdio, and the read-only URL of its database (from its progress lines on stderr)."""
    demo = Server([binary, "demo"], env={"PGMCP_LOG": "warn"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = demo.process.stderr.readline().decode()
        if not line:
            raise RuntimeError("pgmcp demo stopped before it was ready")
        found = re.search(r"read-only role \S+: (postgresql://\S+)", line)
        if found:
            return demo, found.group(1)
    raise RuntimeError("pgmcp demo was not ready in 120 s")


def peers(url):
    """The peers installed in bench/ (as scripts/bench.sh --peers installs them): a short key, the name to report and
    how to start each."""
    from urllib.parse import urlparse

    parts = urlparse(url)
    modules = BENCH / "peers/node_modules"
    found = []

    def version(package):
        try:
            return json.loads((modules / package / "package.json").read_text())["version"]
        except OSError:
            return None

    if v := version("@toolbox-sdk/server-linux-x64"):
        env = {
            "POSTGRES_HOST": parts.hostname,
            "POSTGRES_PORT": str(parts.port),
            "POSTGRES_DATABASE": parts.path.lstrip("/"),
            "POSTGRES_USER": parts.username,
            # Toolbox insists on a password; the throwaway cluster trusts loopback and ignores it.
            "POSTGRES_PASSWORD": "unused-trust-auth",
        }
        command = [modules / "@toolbox-sdk/server-linux-x64/bin/toolbox", "--prebuilt", "postgres", "--stdio"]
        found.append(("toolbox", f"MCP Toolbox {v} (prebuilt postgres)", command, env))
    pro = BENCH / "postgres-mcp/.venv/bin/postgres-mcp"
    if pro.exists():
        v = subprocess.check_output(
            [pro.parent / "python", "-c", "import importlib.metadata as m; print(m.version('postgres-mcp'))"], text=True
        ).strip()
        command = [pro, "--access-mode", "restricted", url]
        found.append(("postgres-mcp", f"Postgres MCP Pro {v} (restricted)", command, {}))
    if v := version("@bytebase/dbhub"):
        command = ["node", modules / "@bytebase/dbhub/dist/index.js", "--transport", "stdio", "--dsn", url]
        found.append(("dbhub", f"DBHub {v}", command, {}))
    if v := version("@modelcontextprotocol/server-postgres"):
        command = ["node", modules / "@modelcontextprotocol/server-postgres/dist/index.js", url]
        found.append(("server-postgres", f"server-postgres {v}", command, {}))
    return found


def measure(name, raw, result, encoding):
    tools = result["tools"]
    model_facing = compact(
        [{"name": t["name"], "description": t.get("description", ""), "input_schema": t["inputSchema"]} for t in tools]
    )
    descriptions = "\n".join(t.get("description", "") for t in tools)
    outputs = [t["outputSchema"] for t in tools if "outputSchema" in t]
    return {
        "name": name,
        "tools": len(tools),
        "bytes": len(raw),
        "tokens": len(encoding.encode(raw.decode())),
        "model_bytes": len(model_facing.encode()),
        "model_tokens": len(encoding.encode(model_facing)),
        "description_tokens": len(encoding.encode(descriptions)),
        "output_schema_tokens": len(encoding.encode(compact(outputs))) if outputs else 0,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pgmcp", required=True)
    parser.add_argument("--peers", action="store_true")
    parser.add_argument("--dump")
    options = parser.parse_args()
    encoding = o200k_base()
    rows = []
    dump = pathlib.Path(options.dump) if options.dump else None
    if dump:
        dump.mkdir(parents=True, exist_ok=True)
    demo, url = start_demo(options.pgmcp)
    try:
        servers = [("pgmcp " + subprocess.check_output([options.pgmcp, "--version"]).decode().split()[-1], demo)]
        todo = peers(url) if options.peers else []
        for name, server in servers:
            raw, result = server.tool_list()
            rows.append(measure(name, raw, result, encoding))
            if dump:
                (dump / "pgmcp.json").write_bytes(raw)
        for key, name, command, env in todo:
            server = Server(command, env)
            try:
                raw, result = server.tool_list()
                rows.append(measure(name, raw, result, encoding))
                if dump:
                    (dump / f"{key}.json").write_bytes(raw)
            except Exception as error:  # a peer that fails is reported, the others still measured
                print(f"{name}: {error}", file=sys.stderr)
            finally:
                server.stop()
    finally:
        demo.stop()

    print("| server | tools | tools/list bytes | tools/list tokens | model-facing bytes | model-facing tokens "
          "| of which descriptions | output schemas (tokens) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['name']} | {r['tools']} | {r['bytes']:,} | {r['tokens']:,} | {r['model_bytes']:,} "
            f"| {r['model_tokens']:,} | {r['description_tokens']:,} | {r['output_schema_tokens']:,} |"
        )


if __name__ == "__main__":
    main()
