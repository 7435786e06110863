#!/usr/bin/env python3
"""Fleet benchmark: many small mirrors over HTTP, kalandra against the naive cached way.

Python 3.11 standard library, git, nginx and fcgiwrap (what tests/run.sh installs).

What it does, in one run:

1. Generates (once, cached in bench/work/fleet/) COUNT small repositories from a fixed
   seed: a few dozen commits each, several branches, annotated and lightweight tags.
   Each exists in two states: "old" and "new", where new = old plus a small update:
   a fast-forward of `main`, a forced rewrite of `feature/b`, a new annotated tag and
   the deletion of `feature/old`.  Also cached: the downstream at the old state (a bare
   repository with `http.receivepack true`) and the naive tool's kept local mirror
   (`git clone --mirror`) at the old state.
2. Serves upstreams (new state) and downstreams on 127.0.0.1 with nginx + fcgiwrap +
   `git http-backend` (protocol v2, pushes allowed), configured in a temporary
   directory, upstreams and downstreams on two free ports (two servers, as two forges
   would be: kalandra's --per-host counts host:port).
3. For each repetition, one after another (the order alternates between repetitions):
   * kalandra, update: downstreams reset to the old state (untimed), then
     `kalandra sync --config FLEET.toml --jobs J --json` (timed); refs verified;
   * kalandra, no-op: the same command again, nothing changed (timed); verified;
   * naive, update: downstreams and the kept mirrors reset to the old state
     (untimed), then per repository `git fetch --prune` + `git push --mirror`
     through `xargs -P J` (timed); verified;
   * naive, no-op: the same again (timed); verified;
   * for information, the no-op floor: `git ls-remote` of both sides of every mirror.
   Every timed run is followed, outside the timing, by a check that every
   downstream's `git for-each-ref refs/heads refs/tags` equals its upstream's
   (and, unless --no-fsck, `git fsck --connectivity-only`).

Measured for each timed run: wall time; the peak RSS of the client's process tree
(max over samples every 20 ms of the sum of VmRSS of the process and all its
descendants; for kalandra also its own exact VmHWM); bytes on local disk (the naive
mirrors' `du -sb`, and for kalandra `du -sb` of the fresh HOME, TMPDIR and working
directory it ran with) and bytes written (write_bytes of /proc, as bench/run.py);
the HTTP requests served (nginx's access log); CPU seconds of the client (rusage of
the command and what it waited for) and of the servers (nginx, fcgiwrap and all under
them, put in a cpuacct cgroup when the script may create one). For information, the
servers' tree RSS is sampled too.  docs/benchmarks.md explains the results.

This is a benchmark, not a test: it asserts nothing about timings.

    python3 bench/fleet.py                         # 200 repositories, --jobs 16, 3 repetitions
    python3 bench/fleet.py --count 20 --repeat 1   # quick
    python3 bench/fleet.py --kalandra /path/to/kalandra --json out.json
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402
from run import du, fmt_b, fmt_s, measure, refs  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
WORK_DIR = BENCH_DIR / "work"
GENERATOR_VERSION = 1
EPOCH0 = 1_600_000_000  # 2020-09-13, first commit date (UTC)


def env(**extra: str) -> dict[str, str]:
    """bench/run.py's environment (TZ, LANG, pinned dates, no system/global git config) plus extra."""
    e = run.env()
    e.pop("GIT_DIR", None)
    e.update(extra)
    return e


def git(*args: str, cwd: Path | None = None, input: bytes | None = None) -> str:
    r = subprocess.run(["git", *args], cwd=cwd, env=env(), input=input,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode:
        raise RuntimeError(f"git {' '.join(args)[:300]} failed ({r.returncode}): "
                           f"{r.stderr.decode(errors='replace')[-1000:]}")
    return r.stdout.decode()


def names(count: int) -> list[str]:
    return [f"r{i:03d}" for i in range(count)]


def pmap(fn, items, workers: int = 4) -> list:
    with cf.ThreadPoolExecutor(workers) as ex:
        return list(ex.map(fn, items))


# ---------------------------------------------------------------------------
# Generation


WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi "
         "rho sigma tau upsilon phi chi psi omega read write open close buffer parse render "
         "update config index commit branch merge tag fetch push remote local value count "
         "error result option handle stream packet socket thread queue cache store").split()


class RepoGen:
    """A small history as `git fast-import` streams, from random.Random(seed)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.t = EPOCH0 + self.rng.randrange(0, 86400 * 30)
        self.mark = 0
        self.files: dict[str, list[str]] = {}
        self.state: dict[str, dict[str, list[str]]] = {}  # mark -> tree (for branching)
        self.out: list[bytes] = []

    def line(self) -> str:
        r = self.rng
        return " ".join(r.choice(WORDS) for _ in range(r.randint(3, 10)))

    def data(self, s: str) -> None:
        b = s.encode()
        self.out.append(b"data %d\n" % len(b) + b + b"\n")

    def initial_files(self) -> None:
        for k in range(self.rng.randint(12, 24)):
            d = self.rng.choice(["src", "src/core", "src/net", "docs", "tests"])
            self.files[f"{d}/f{k:02d}.txt"] = [self.line() for _ in range(self.rng.randint(20, 80))]

    def commit(self, ref: str, parent: str | None, tree: dict[str, list[str]], msg: str) -> str:
        """tree is edited in place; returns the new commit's mark."""
        r = self.rng
        touched = []
        for _ in range(r.randint(1, 3)):
            path = r.choice(sorted(tree))
            lines = list(tree[path])
            op = r.random()
            i = r.randrange(len(lines) + 1)
            if op < 0.5 or len(lines) < 5:
                lines[i:i] = [self.line() for _ in range(r.randint(1, 6))]
            elif op < 0.8:
                lines[i:i + r.randint(1, 3)] = [self.line()]
            else:
                del lines[i:i + r.randint(1, 4)]
            tree[path] = lines
            touched.append(path)
        if r.random() < 0.1:
            path = f"src/new{self.mark:03d}.txt"
            tree[path] = [self.line() for _ in range(r.randint(5, 30))]
            touched.append(path)
        self.mark += 1
        self.t += r.randint(600, 86400)
        m = f":{self.mark}"
        self.out.append(f"commit {ref}\nmark {m}\n"
                        f"committer bench <bench@example.invalid> {self.t} +0000\n".encode())
        self.data(msg + "\n")
        if parent:
            self.out.append(f"from {parent}\n".encode())
        for p in sorted(set(touched)):
            self.out.append(f"M 100644 inline {p}\n".encode())
            self.data("\n".join(tree[p]) + "\n")
        self.out.append(b"\n")
        self.state[m] = {k: list(v) for k, v in tree.items()}
        return m

    def chain(self, ref: str, start: str | None, tree: dict, n: int, what: str) -> list[str]:
        marks, parent = [], start
        for k in range(n):
            parent = self.commit(ref, parent, tree, f"{what}: change {k + 1}\n\n{self.line()}")
            marks.append(parent)
        return marks

    def tag(self, name: str, target: str, msg: str) -> None:
        self.t += 60
        self.out.append(f"tag {name}\nfrom {target}\n"
                        f"tagger bench <bench@example.invalid> {self.t} +0000\n".encode())
        self.data(msg + "\n")

    def reset(self, ref: str, target: str) -> None:
        self.out.append(f"reset {ref}\nfrom {target}\n\n".encode())

    def old(self) -> bytes:
        """The old state; remembers what the update needs."""
        r = self.rng
        self.initial_files()
        tree = {k: list(v) for k, v in self.files.items()}
        main = self.chain("refs/heads/main", None, tree, r.randint(24, 40), "main")
        n = len(main)
        self.chain("refs/heads/feature/a", main[2 * n // 3], dict(self.state[main[2 * n // 3]]),
                   r.randint(3, 6), "feature a")
        self.fb_base = main[n // 2]
        self.chain("refs/heads/feature/b", self.fb_base, dict(self.state[self.fb_base]),
                   r.randint(3, 5), "feature b")
        self.chain("refs/heads/feature/old", main[n // 3], dict(self.state[main[n // 3]]),
                   r.randint(2, 4), "feature old")
        rel = self.chain("refs/heads/release/1.x", main[3 * n // 4], dict(self.state[main[3 * n // 4]]),
                         r.randint(1, 3), "release 1.x")
        self.tag("v1.0", main[n // 2], "release 1.0")
        self.tag("v1.1", rel[-1], "release 1.1")
        self.reset("refs/tags/snap-1", main[n - 5])
        self.reset("refs/heads/main", main[-1])
        self.main_tip, self.main_tree = main[-1], tree
        s = b"".join(self.out)
        self.out = []
        return s

    def update(self) -> bytes:
        """The small update: fast-forward main, rewrite feature/b, new tag (deletion: by the caller)."""
        r = self.rng
        main = self.chain("refs/heads/main", self.main_tip, self.main_tree, r.randint(1, 3), "main")
        # forced: feature/b rebuilt on the same base with other commits; the old ones are dropped
        self.chain("refs/heads/feature/b", self.fb_base, dict(self.state[self.fb_base]),
                   r.randint(2, 4), "feature b (rewritten)")
        self.tag("v1.2", main[-1], "release 1.2")
        s = b"".join(self.out)
        self.out = []
        return s


def init_bare(path: Path) -> None:
    git("init", "-q", "--bare", "--object-format=sha1", "-b", "main", str(path))
    for k, v in (("receive.autogc", "false"), ("gc.auto", "0"), ("http.receivepack", "true"),
                 ("uploadpack.allowFilter", "true")):
        git("-C", str(path), "config", k, v)


def gen_one(cache: Path, seed: int, name: str) -> None:
    g = RepoGen(seed * 100_003 + int(name[1:]))
    old, new = cache / "up-old" / f"{name}.git", cache / "up-new" / f"{name}.git"
    marks = cache / "marks" / f"{name}.marks"
    init_bare(old)
    git("-C", str(old), "fast-import", "--quiet", f"--export-marks={marks}", input=g.old())
    git("-C", str(old), "repack", "-adq")
    git("-C", str(old), "pack-refs", "--all")
    shutil.copytree(old, new, symlinks=True)
    git("-C", str(new), "fast-import", "--quiet", "--force", f"--import-marks={marks}", input=g.update())
    git("-C", str(new), "update-ref", "-d", "refs/heads/feature/old")
    git("-C", str(new), "pack-refs", "--all")
    # downstream at the old state, and the naive tool's kept mirror (cloned from old)
    down = cache / "down-old" / f"{name}.git"
    init_bare(down)
    git("-C", str(old), "push", "-q", "--mirror", "file://" + str(down))
    mirror = cache / "mirror-old" / f"{name}.git"
    git("clone", "-q", "--mirror", "file://" + str(old), str(mirror))
    git("-C", str(mirror), "config", "gc.auto", "0")


def generate(count: int, seed: int) -> Path:
    cache = WORK_DIR / "fleet" / f"c{count}-s{seed}-g{GENERATOR_VERSION}"
    if (cache / "DONE").exists():
        return cache
    if cache.exists():
        shutil.rmtree(cache)
    for d in ("up-old", "up-new", "down-old", "mirror-old", "marks"):
        (cache / d).mkdir(parents=True)
    t0 = time.perf_counter()
    print(f"generating {count} repositories into {cache}", file=sys.stderr, flush=True)
    pmap(lambda n: gen_one(cache, seed, n), names(count), workers=os.cpu_count() or 2)
    # sanity: the update really is a fast-forward, a forced update, a create and a delete
    r0 = names(count)[0]
    o, n = refs(cache / "up-old" / f"{r0}.git"), refs(cache / "up-new" / f"{r0}.git")
    assert "refs/heads/feature/old" in o and "refs/heads/feature/old" not in n
    assert "refs/tags/v1.2" in n and "refs/tags/v1.2" not in o
    for b in ("main", "feature/b"):
        assert o[f"refs/heads/{b}"] != n[f"refs/heads/{b}"]
    git("-C", str(cache / "up-new" / f"{r0}.git"), "merge-base", "--is-ancestor",
        o["refs/heads/main"], n["refs/heads/main"])  # raises if not a fast-forward
    rc = subprocess.run(["git", "-C", str(cache / "up-new" / f"{r0}.git"), "merge-base", "--is-ancestor",
                         o["refs/heads/feature/b"], n["refs/heads/feature/b"]], env=env()).returncode
    assert rc == 1, "feature/b should be a forced update"
    digest = {}
    for state in ("up-old", "up-new"):
        h = hashlib.sha256()
        for name in names(count):
            h.update(git("-C", str(cache / state / f"{name}.git"), "for-each-ref",
                          "--format=%(refname) %(objectname)").encode())
        digest[state] = h.hexdigest()
    meta = dict(count=count, seed=seed, generator=GENERATOR_VERSION, seconds=time.perf_counter() - t0,
                refs_sha256=digest,
                up_new_bytes=du(cache / "up-new"), mirror_bytes=du(cache / "mirror-old"),
                example=dict(name=r0, old=o, new=n,
                             commits=int(git("-C", str(cache / "up-new" / f"{r0}.git"),
                                             "rev-list", "--all", "--count"))))
    (cache / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    (cache / "DONE").write_text("")
    print(f"generated in {meta['seconds']:.1f} s", file=sys.stderr, flush=True)
    return cache


# ---------------------------------------------------------------------------
# Helpers


def reset_dir(src: Path, dst: Path) -> None:
    """Untimed: dst becomes a fresh copy of src (cp -a)."""
    if dst.exists():
        shutil.rmtree(dst)
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def program(name: str) -> str:
    for d in [*os.environ.get("PATH", "").split(":"), "/usr/sbin", "/sbin", "/usr/local/sbin"]:
        p = Path(d) / name
        if d and p.is_file():
            return str(p)
    sys.exit(f"{name} is not installed (tests/run.sh installs nginx and fcgiwrap)")


# ---------------------------------------------------------------------------
# Servers


class Servers:
    """nginx + fcgiwrap + git http-backend serving ROOT/up on 127.0.0.1:PORT1 and ROOT/down
    on 127.0.0.1:PORT2 (protocol v2 passed on, pushes allowed)."""

    def __init__(self, root: Path, fcgi_children: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="kalandra-fleet-nginx-"))
        for sub in ("logs", "tmp"):
            (self.dir / sub).mkdir()
        self.ports = dict(up=free_port(), down=free_port())
        d = self.dir
        sock = d / "fcgi.sock"
        cfg = d / "server.gitconfig"
        cfg.write_text("[uploadpack]\n\tallowFilter = true\n[receive]\n\tautogc = false\n")
        backend = Path(git("--exec-path").strip()) / "git-http-backend"
        user = "user root;\n" if os.geteuid() == 0 else ""
        # one server block per side, on two ports: upstream and downstream are two
        # servers, as two forges would be (kalandra's --per-host counts host:port)
        location = f"""    location ~ ^(/.*)$ {{
      fastcgi_param REQUEST_METHOD $request_method;
      fastcgi_param QUERY_STRING $query_string;
      fastcgi_param CONTENT_TYPE $content_type;
      fastcgi_param CONTENT_LENGTH $content_length;
      fastcgi_param REMOTE_ADDR $remote_addr;
      fastcgi_param SERVER_PROTOCOL $server_protocol;
      fastcgi_param HTTP_CONTENT_ENCODING $http_content_encoding;
      fastcgi_param GIT_PROTOCOL $http_git_protocol;
      fastcgi_param REMOTE_USER bench;
      fastcgi_param SCRIPT_FILENAME {backend};
      fastcgi_param GIT_PROJECT_ROOT {root};
      fastcgi_param GIT_HTTP_EXPORT_ALL 1;
      fastcgi_param GIT_CONFIG_NOSYSTEM 1;
      fastcgi_param GIT_CONFIG_GLOBAL {cfg};
      fastcgi_param HOME {d};
      fastcgi_param PATH_INFO $1;
      fastcgi_pass unix:{sock};
    }}
"""
        servers = "".join(f"  server {{\n    listen 127.0.0.1:{port} backlog=1024;\n{location}  }}\n"
                          for port in self.ports.values())
        conf = f"""{user}worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
  log_format bench '$request_method $request_uri $status $request_time';
  access_log {d}/logs/access.log bench;
  client_body_temp_path {d}/tmp/body;
  fastcgi_temp_path {d}/tmp/fastcgi;
  proxy_temp_path {d}/tmp/proxy;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  client_max_body_size 0;
  fastcgi_read_timeout 300s;
{servers}}}
"""
        (d / "nginx.conf").write_text(conf)
        self.fcgiwrap = subprocess.Popen(
            [program("fcgiwrap"), "-c", str(fcgi_children), "-s", f"unix:{sock}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(d / "logs/fcgiwrap.log", "wb"), start_new_session=True,
            env=env(GIT_CONFIG_GLOBAL=str(cfg)))
        self.nginx = subprocess.Popen(
            [program("nginx"), "-p", str(d), "-c", str(d / "nginx.conf"), "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(d / "logs/nginx.stderr", "wb"), start_new_session=True)
        deadline = time.monotonic() + 15
        while True:
            for p, what in ((self.nginx, "nginx"), (self.fcgiwrap, "fcgiwrap")):
                if p.poll() is not None:
                    self.stop()
                    sys.exit(f"{what} exited at startup; see {d}/logs")
            try:
                for port in self.ports.values():
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                if sock.exists():
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                sys.exit(f"nginx/fcgiwrap did not come up in 15 s; see {d}/logs")
            time.sleep(0.02)
        self.cgroup = self._cgroup()

    def _cgroup(self) -> Path | None:
        """A cpuacct cgroup (v1) holding nginx and fcgiwrap, so that the servers' CPU time
        is counted whoever reaps their processes; None where one cannot be made."""
        cg = Path("/sys/fs/cgroup/cpuacct") / f"kalandra-fleet-bench-{os.getpid()}"
        try:
            cg.mkdir()
            for root in self.pids():
                for pid in [root, *run._descendants(root)]:
                    (cg / "cgroup.procs").write_text(str(pid))
        except OSError:
            return None
        return cg

    def cpu(self) -> float | None:
        """CPU seconds used so far by nginx, fcgiwrap and everything they started
        (http-backend, upload-pack, pack-objects, receive-pack, index-pack...)."""
        if self.cgroup is None:
            return None
        return int((self.cgroup / "cpuacct.usage").read_text()) / 1e9

    def log_offset(self) -> int:
        try:
            return (self.dir / "logs/access.log").stat().st_size
        except FileNotFoundError:
            return 0

    def measure(self, cmd: list[str], **kw) -> dict:
        """run.measure, plus the HTTP requests served and the servers' CPU seconds meanwhile."""
        off, cpu = self.log_offset(), self.cpu()
        m = measure(cmd, others=tuple(self.pids()), **kw)
        m["server_cpu"] = self.cpu() - cpu if cpu is not None else None
        m["requests"] = self.requests_since(off)
        return m

    def requests_since(self, offset: int) -> dict:
        """The HTTP requests nginx logged since offset: counts by kind, non-2xx count,
        and the sum of their durations (nginx's $request_time)."""
        with open(self.dir / "logs/access.log", "rb") as f:
            f.seek(offset)
            lines = f.read().decode(errors="replace").splitlines()
        kinds: dict[str, int] = {}
        bad, seconds = 0, 0.0
        for line in lines:
            method, uri, status, t = line.split()
            path, _, query = uri.partition("?")
            kind = f"{method} {path.rsplit('/', 1)[-1] if method == 'POST' else 'info/refs ' + query}"
            kinds[kind] = kinds.get(kind, 0) + 1
            bad += not status.startswith("2")
            seconds += float(t)
        return dict(total=len(lines), by_kind=kinds, non_2xx=bad, request_seconds=round(seconds, 3))

    def url(self, side: str, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[side]}/{side}/{name}.git"

    def pids(self) -> list[int]:
        return [self.nginx.pid, self.fcgiwrap.pid]

    def stop(self) -> None:
        for p in (self.nginx, self.fcgiwrap):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, 15)  # their own process groups (start_new_session)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, 9)
                    p.wait()
        if getattr(self, "cgroup", None):
            for _ in range(50):  # empty once the killed processes are gone
                try:
                    self.cgroup.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------
# Measurement


# ---------------------------------------------------------------------------
# The run


class Fleet:
    def __init__(self, cache: Path, count: int, tmp: Path, fsck: bool) -> None:
        self.cache, self.names, self.tmp, self.fsck = cache, names(count), tmp, fsck
        self.srv = tmp / "srv"
        (self.srv).mkdir()
        # upstream: the new state (never written to by either approach)
        subprocess.run(["cp", "-a", str(cache / "up-new"), str(self.srv / "up")], check=True)
        self.down = self.srv / "down"
        self.mirrors = tmp / "mirrors"
        self.mirror_snap = tmp / "mirror-snap"

    def prepare_mirror_snapshot(self, servers: Servers) -> None:
        """The naive mirrors at the old state, with origin pointing at the HTTP upstream."""
        subprocess.run(["cp", "-a", str(self.cache / "mirror-old"), str(self.mirror_snap)], check=True)
        for n in self.names:
            c = self.mirror_snap / f"{n}.git" / "config"
            text = c.read_text()
            old = "file://" + str(self.cache / "up-old" / f"{n}.git")
            assert old in text, c
            c.write_text(text.replace(old, servers.url("up", n)))

    def reset_down(self) -> None:
        reset_dir(self.cache / "down-old", self.down)

    def reset_mirrors(self) -> None:
        reset_dir(self.mirror_snap, self.mirrors)

    def verify(self) -> dict:
        """Untimed: every downstream's branches and tags equal upstream's (and fsck)."""
        def one(n: str) -> str | None:
            u, d = refs(self.srv / "up" / f"{n}.git"), refs(self.down / f"{n}.git")
            if u != d:
                return f"{n}: refs differ: missing {sorted(set(u) - set(d))[:3]}, " \
                       f"extra {sorted(set(d) - set(u))[:3]}, " \
                       f"differ {sorted(r for r in set(u) & set(d) if u[r] != d[r])[:3]}"
            if self.fsck:
                r = subprocess.run(["git", "-C", str(self.down / f"{n}.git"), "fsck", "--connectivity-only",
                                    "--no-progress"], env=env(), capture_output=True, text=True)
                if r.returncode:
                    return f"{n}: fsck failed: {r.stderr[-300:]}"
            return None
        bad = [b for b in pmap(one, self.names) if b]
        return dict(ok=not bad, bad=len(bad), first=bad[:5])

    def precondition(self) -> None:
        """Untimed: the downstreams really are behind (the update is there to sync)."""
        n = self.names[0]
        assert refs(self.srv / "up" / f"{n}.git") != refs(self.down / f"{n}.git")


def write_config(path: Path, servers: Servers, fleet: Fleet) -> None:
    names_toml = ", ".join(f'"{n}"' for n in fleet.names)
    path.write_text(
        "# written by bench/fleet.py\n"
        "[[template]]\n"
        f"names = [{names_toml}]\n"
        f'upstream = "{servers.url("up", "{name}")}"\n'
        f'downstream = "{servers.url("down", "{name}")}"\n')


def run_kalandra(fleet: Fleet, servers: Servers, binary: Path, config: Path, jobs: int,
                 extra: list[str], scenario: str, per_process: bool = False) -> dict:
    """The fleet runner (one process, --config --jobs); with per_process, one
    `kalandra sync UP DOWN` process per mirror through xargs -P jobs instead."""
    # a fresh, empty HOME, TMPDIR and working directory (outside any git repository):
    # whatever kalandra left on local disk would be found there
    local = Path(tempfile.mkdtemp(prefix=f"kalandra-fleet-local-{scenario}-"))
    for d in ("home", "tmp", "cwd"):
        (local / d).mkdir(parents=True)
    du_before = du(local)
    e = env(HOME=str(local / "home"), TMPDIR=str(local / "tmp"), XDG_CACHE_HOME=str(local / "home/.cache"),
            XDG_CONFIG_HOME=str(local / "home/.config"))
    if per_process:
        lst = fleet.tmp / "kalandra-list.txt"
        lst.write_text("".join(f"{servers.url('up', n)} {servers.url('down', n)}\n" for n in fleet.names))
        cmd = ["xargs", "-P", str(jobs), "-L", "1", str(binary), "sync", *extra]
        m = servers.measure(cmd, cwd=local / "cwd", run_env=e, stdin=lst)
        m["own_peak_rss"] = None  # xargs's: meaningless; max_single_rss is the largest kalandra
        res = {k: v for k, v in m.items() if k not in ("stdout", "stderr")}
        res["cmd"] = " ".join(cmd) + " < list"
    else:
        cmd = [str(binary), "sync", "--config", str(config), "--jobs", str(jobs), *extra, "--json"]
        m = servers.measure(cmd, cwd=local / "cwd", run_env=e)
        res = {k: v for k, v in m.items() if k not in ("stdout", "stderr")}
        res["cmd"] = " ".join(cmd)
        try:
            j = json.loads(m["stdout"])
            res["json_summary"] = {k: v for k, v in j.items() if k == "summary" or not isinstance(v, (list, dict))} \
                if isinstance(j, dict) else type(j).__name__
        except json.JSONDecodeError as ex:
            res["json_error"] = f"{ex}: {m['stdout'][:300]!r}"
    files = [p for p in local.rglob("*") if not p.is_dir()]
    res["local_files"] = [str(p.relative_to(local)) for p in files][:20]
    res["local_bytes"] = sum(p.stat().st_size for p in files)
    res["local_du_growth"] = du(local) - du_before
    shutil.rmtree(local)
    if m["rc"]:
        res["error"] = m["stderr"][-3000:]
    res["verify"] = fleet.verify()
    return res


def run_naive(fleet: Fleet, servers: Servers, jobs: int, scenario: str) -> dict:
    lst = fleet.tmp / "naive-list.txt"
    lst.write_text("".join(f"{fleet.mirrors / (n + '.git')} {servers.url('down', n)}\n" for n in fleet.names))
    script = 'git -C "$1" fetch --prune -q origin && git -C "$1" push --mirror -q "$2"'
    cmd = ["xargs", "-P", str(jobs), "-L", "1", "sh", "-c", script, "sh"]
    before = du(fleet.mirrors)
    m = servers.measure(cmd, stdin=lst)
    res = {k: v for k, v in m.items() if k not in ("stdout", "stderr")}
    res["cmd"] = f"xargs -P {jobs} -L 1 sh -c '{script}' sh < list"
    res["mirror_du_before"] = before
    res["mirror_du_bytes"] = du(fleet.mirrors)
    if m["rc"]:
        res["error"] = m["stderr"][-3000:]
    res["verify"] = fleet.verify()
    return res


def run_adverts(fleet: Fleet, servers: Servers, jobs: int) -> dict:
    """For information, the no-op case's floor: only reading both sides' ref
    advertisements (`git ls-remote`, protocol v2: GET info/refs + POST ls-refs each)."""
    lst = fleet.tmp / "adverts-list.txt"
    lst.write_text("".join(f"{servers.url('up', n)} {servers.url('down', n)}\n" for n in fleet.names))
    script = 'git ls-remote -q "$1" >/dev/null && git ls-remote -q "$2" >/dev/null'
    m = servers.measure(["xargs", "-P", str(jobs), "-L", "1", "sh", "-c", script, "sh"], stdin=lst)
    res = {k: v for k, v in m.items() if k not in ("stdout", "stderr")}
    res["cmd"] = f"xargs -P {jobs} -L 1 sh -c '{script}' sh < list"
    if m["rc"]:
        res["error"] = m["stderr"][-3000:]
    return res


# ---------------------------------------------------------------------------
# Report


def med(runs: list[dict], key: str):
    vals = [r.get(key) for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def ratio(a, b) -> str:
    return f"{a / b:.2f}×" if a is not None and b else "—"


def table(report: dict) -> str:
    hdr = ("scenario", "kalandra wall", "naive wall", "k / naive wall", "floor: adverts only (info)",
           "HTTP requests k / naive", "CPU client k / naive", "CPU servers k / naive", "k / naive CPU total",
           "kalandra peak RSS (VmHWM)", "kalandra tree peak RSS", "naive tree peak RSS", "k / naive RSS",
           "kalandra local disk", "kalandra write_bytes", "naive mirrors du", "naive write_bytes",
           "verified")
    rows = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for sc, r in report["scenarios"].items():
        k, n = r.get("kalandra") or [], r.get("naive") or []
        kfail = any(x["rc"] for x in k)
        nfail = any(x["rc"] for x in n)
        ver = all(x["verify"]["ok"] for x in k + n)
        kw, nw = med(k, "wall"), med(n, "wall")
        kt, nt = med(k, "tree_peak_rss"), med(n, "tree_peak_rss")
        rows.append("| " + " | ".join((
            sc,
            ("FAILED " if kfail else "") + fmt_s(kw) if k else "pending",
            ("FAILED " if nfail else "") + fmt_s(nw),
            ratio(kw, nw),
            fmt_s(med(r.get("adverts") or [], "wall")) if r.get("adverts") else "—",
            f"{med([x['requests'] for x in k], 'total') if k else '—'} / "
            f"{med([x['requests'] for x in n], 'total') if n else '—'}",
            f"{fmt_s(med(k, 'cpu'))} / {fmt_s(med(n, 'cpu'))}",
            f"{fmt_s(med(k, 'server_cpu'))} / {fmt_s(med(n, 'server_cpu'))}",
            ratio(med([dict(t=x["cpu"] + (x["server_cpu"] or 0)) for x in k], "t"),
                  med([dict(t=x["cpu"] + (x["server_cpu"] or 0)) for x in n], "t")),
            (fmt_b(med(k, "own_peak_rss")) if med(k, "own_peak_rss") is not None
             else f"{fmt_b(med(k, 'max_single_rss'))} (largest process)") if k else "pending",
            fmt_b(kt) if k else "pending",
            fmt_b(nt),
            ratio(kt, nt),
            fmt_b(med(k, "local_du_growth")) if k else "pending",
            fmt_b(med(k, "tree_write_bytes")) if k else "pending",
            fmt_b(med(n, "mirror_du_bytes")),
            fmt_b(med(n, "tree_write_bytes")),
            "yes" if ver else "NO")) + " |")
    return "\n".join(rows)


def ensure_kalandra(path: str | None) -> Path | None:
    p = Path(path).resolve() if path else ROOT / "target" / "release" / "kalandra"
    if not p.exists() and not path:
        print("building kalandra: cargo build --release", file=sys.stderr)
        subprocess.run(["cargo", "build", "--release", "--bin", "kalandra"], cwd=ROOT)
    return p if p.exists() else None


def probe_kalandra(binary: Path, per_process: bool) -> str | None:
    r = subprocess.run([str(binary), "sync", "--help"], capture_output=True, text=True, env=env())
    text = r.stdout + r.stderr
    if r.returncode != 0 or not per_process and ("--config" not in text or "--jobs" not in text):
        return f"`{binary} sync --help` does not list --config and --jobs (the fleet runner is not in this build)"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=200, help="repositories (default 200)")
    ap.add_argument("--jobs", type=int, default=16, help="parallelism of both approaches (default 16)")
    ap.add_argument("--repeat", type=int, default=3, help="repetitions; medians are reported (default 3)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kalandra", help="the kalandra binary (default target/release/kalandra, built if missing)")
    ap.add_argument("--kalandra-arg", action="append", default=[], metavar="ARG",
                    help="extra argument for kalandra sync (repeatable), e.g. --kalandra-arg=--per-host=32")
    ap.add_argument("--no-kalandra", action="store_true", help="naive only (harness check)")
    ap.add_argument("--per-process", action="store_true",
                    help="run kalandra as one `kalandra sync UP DOWN` process per mirror through xargs -P JOBS "
                         "(the shell-loop way) instead of the fleet runner")
    ap.add_argument("--no-naive", action="store_true")
    ap.add_argument("--no-floor", action="store_true",
                    help="skip the no-op floor (git ls-remote of both sides of every mirror)")
    ap.add_argument("--no-fsck", action="store_true", help="verify refs only, skip git fsck --connectivity-only")
    ap.add_argument("--fcgi-children", type=int, default=0,
                    help="fcgiwrap children (default 4 × jobs: no request waits for a free child)")
    ap.add_argument("--json", metavar="FILE", help="also write the JSON report here ('-': stdout)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()

    cache = generate(a.count, a.seed)
    binary, note = None, None
    if not a.no_kalandra:
        binary = ensure_kalandra(a.kalandra)
        note = probe_kalandra(binary, a.per_process) if binary else "kalandra binary not found"
        if note:
            print(f"note: {note}; kalandra cells will read 'pending'", file=sys.stderr)
            binary = None

    WORK_DIR.mkdir(exist_ok=True)
    tmp = WORK_DIR / f"fleet-tmp-{os.getpid()}-{int(time.time())}"
    tmp.mkdir()
    fleet = Fleet(cache, a.count, tmp, fsck=not a.no_fsck)
    servers = Servers(fleet.srv, a.fcgi_children or 4 * a.jobs)
    report: dict = dict(
        count=a.count, jobs=a.jobs, repeat=a.repeat, seed=a.seed, cache=str(cache),
        meta=json.loads((cache / "meta.json").read_text()), git=git("--version").strip(),
        kalandra=str(binary) if binary else None, kalandra_note=note, kalandra_args=a.kalandra_arg,
        kalandra_mode="per-process (xargs)" if a.per_process else "fleet runner (--config)",
        nproc=os.cpu_count(), loadavg_start=os.getloadavg(),
        started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), scenarios={},
    )
    runs: dict[str, dict[str, list]] = dict(update=dict(kalandra=[], naive=[]),
                                            noop=dict(kalandra=[], naive=[], adverts=[]))

    def log(leg: str, sc: str, i: int, r: dict) -> None:
        v = r["verify"]
        print(f"   [{i + 1}/{a.repeat}] {leg:8s} {sc:6s} {fmt_s(r['wall'])} rc={r['rc']} "
              f"tree RSS {fmt_b(r['tree_peak_rss'])} {r['requests']['total']} requests "
              f"CPU {r['cpu']:.1f} s + servers {fmt_s(r['server_cpu'])} "
              f"verified={'yes' if v['ok'] else 'NO ' + str(v['first'])}"
              + (f"\n{r['error']}" if r.get("error") else ""), file=sys.stderr, flush=True)

    try:
        fleet.prepare_mirror_snapshot(servers)
        config = tmp / "fleet.toml"
        write_config(config, servers, fleet)
        for i in range(a.repeat):
            legs = []
            if binary:
                legs.append("kalandra")
            if not a.no_naive:
                legs.append("naive")
            if i % 2:
                legs.reverse()
            for leg in legs:
                fleet.reset_down()
                fleet.precondition()
                if leg == "kalandra":
                    for sc in ("update", "noop"):
                        r = run_kalandra(fleet, servers, binary, config, a.jobs, a.kalandra_arg, sc,
                                         per_process=a.per_process)
                        runs[sc]["kalandra"].append(r)
                        log(leg, sc, i, r)
                else:
                    fleet.reset_mirrors()
                    for sc in ("update", "noop"):
                        r = run_naive(fleet, servers, a.jobs, sc)
                        runs[sc]["naive"].append(r)
                        log(leg, sc, i, r)
            if not a.no_floor:
                r = run_adverts(fleet, servers, a.jobs)
                runs["noop"]["adverts"].append(r)
                print(f"   [{i + 1}/{a.repeat}] adverts  noop   {fmt_s(r['wall'])} rc={r['rc']} (floor, info)",
                      file=sys.stderr, flush=True)
    finally:
        servers.stop()
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    report["scenarios"] = runs
    report["loadavg_end"] = os.getloadavg()
    m = report["meta"]
    print(f"\n{a.count} repositories (seed {a.seed}; e.g. {m['example']['name']}: "
          f"{m['example']['commits']} commits, {len(m['example']['new'])} refs), over HTTP "
          f"(nginx + fcgiwrap + git http-backend), --jobs {a.jobs}, repeat {a.repeat} (medians); "
          f"{report['git']}; load average {report['loadavg_start'][0]:.2f} -> {report['loadavg_end'][0]:.2f}")
    if note:
        print(f"kalandra: pending ({note})")
    print(table(report))
    run.save_report(report, f"fleet-c{a.count}-j{a.jobs}", a.json)

if __name__ == "__main__":
    main()
