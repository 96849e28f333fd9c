"""The host side of bench/where: a throwaway PostgreSQL cluster with pgbench's dataset, and what /proc says about
a process's threads (run time, context switches)."""

import collections
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile

DATABASE = "bench"
SCALE = 1


def load_average():
    return float(pathlib.Path("/proc/loadavg").read_text().split()[0])


# ---------------------------------------------------------------- the throwaway cluster


def clean_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin_dir():
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True).stdout.strip()
        if out and pathlib.Path(out, "initdb").is_file():
            return pathlib.Path(out)
    versions = sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not versions:
        sys.exit("no PostgreSQL server binaries (initdb) found")
    return versions[-1].parent


class Cluster:
    """initdb + pg_ctl in a private temporary directory; as root, the server runs as the `postgres` OS user."""

    def __init__(self):
        self.bin = postgres_bin_dir()
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="pgmcp-where-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_user = []
        if os.geteuid() == 0:
            import pwd

            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.run(["initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.root}'\n"
                "fsync = off\nsynchronous_commit = off\nshared_buffers = 128MB\n"
                "shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track_utility = on\n"
            )
        self.run(["pg_ctl", "-D", self.data, "-l", self.root / "server.log", "-w", "-t", "60", "start"])
        self.psql("postgres", f"CREATE DATABASE {DATABASE}")
        self.run(["pgbench", "-i", "-q", "-s", str(SCALE), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                  "postgres", DATABASE])
        self.psql(DATABASE, "CREATE EXTENSION pg_stat_statements; SELECT count(*) FROM pgbench_accounts")
        self.version = self.psql(DATABASE, "SHOW server_version").strip()
        self.postmaster = int((self.data / "postmaster.pid").read_text().split()[0])

    def run(self, command, capture=True):
        tool = self.bin / command[0]
        if not tool.is_file():
            tool = shutil.which(command[0]) or command[0]
        out = subprocess.run(self.as_user + [str(tool)] + [str(c) for c in command[1:]], capture_output=True,
                             text=True, env=clean_env(), cwd=self.root, timeout=300)
        if out.returncode != 0:
            sys.exit(f"{command[0]} failed: {out.stderr.strip()[-2000:]}")
        return out.stdout

    def psql(self, db, sql):
        return self.run(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
                         str(self.port), "-U", "postgres", "-d", db, "-c", sql])

    def url(self):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def statements(self):
        """Statements run so far in the bench database by anyone but this script (pg_stat_statements): by text,
        (calls, total execution time in ms)."""
        out = self.psql(DATABASE, "SELECT t || chr(9) || c || chr(9) || e FROM (SELECT regexp_replace(left(query, "
                        "90), '\\s+', ' ', 'g') AS t, sum(calls) AS c, sum(total_exec_time) AS e FROM pg_stat_statements "
                        f"s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = '{DATABASE}' AND query NOT LIKE "
                        "'%pg_stat_statements%' GROUP BY 1) AS x")
        found = {}
        for line in filter(None, out.splitlines()):
            text, calls, total = line.rsplit("\t", 2)
            found[text] = (int(calls), float(total))
        return found

    def cpu_ns(self):
        """Run time so far of each process of the cluster, by pid (a window takes the pids present at both ends)."""
        return {pid: cpu_ns(pid) for pid in process_tree(self.postmaster)}

    def stop(self):
        try:
            self.run(["pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop"])
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------- /proc


def children():
    tree = collections.defaultdict(list)
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            tree[ppid].append(int(entry.name))
    return tree


def process_tree(pid):
    tree, found, todo = children(), [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(tree.get(p, []))
    return found


def tasks(pid):
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def cpu_ns(pid):
    total = 0
    for tid in tasks(pid):
        try:
            total += int(pathlib.Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except OSError:
            pass
    return total


def switches(pid):
    voluntary = involuntary = 0
    for tid in tasks(pid):
        try:
            text = pathlib.Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except OSError:
            continue
        voluntary += int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", text, re.M).group(1))
        involuntary += int(re.search(r"^nonvoluntary_ctxt_switches:\s+(\d+)", text, re.M).group(1))
    return voluntary, involuntary
