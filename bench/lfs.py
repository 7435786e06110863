#!/usr/bin/env python3
"""Git LFS benchmark (issue 15): kalandra's relay against the naive way, in the same run.

Python 3.11 standard library, git, git-lfs, nginx, fcgiwrap, and giftless in the venv
tests/lfs/.venv (tests/run.sh makes it; by hand: python3 -m venv tests/lfs/.venv &&
tests/lfs/.venv/bin/pip install -r tests/lfs/requirements.txt).

What it does, in one run:

1. Serves, as tests/it/lfs_server.rs does (tests/lfs/README.md): one nginx + fcgiwrap +
   git http-backend on 127.0.0.1, in a temporary directory, with two locations:
   `/lfs-up/` (upstream) and `/lfs-down/` (downstream). Under each, `<repo>.git/info/lfs/...`
   goes to that side's own giftless (Flask's server, `--with-threads`, local storage, its
   own token, tests/lfs/auth.py and tests/lfs/giftless.yaml.in) and everything else is the
   git data of `<world>/<repo>.git`, served by git http-backend (open, pushes allowed,
   `uploadpack.allowFilter`: kalandra finds the pointers with a `blob:limit` filter).
2. Generates the upstream once (cached in bench/work/lfs/): OBJECTS objects of SIZE bytes
   of pseudo-random (incompressible) data from a fixed seed, 5 per commit, tracked with
   `git lfs track`, pushed with the real git-lfs client (`git lfs push --all`, `git push`)
   to the upstream's giftless, whose storage stays in the cache.
3. For each repetition (the order of the two legs alternates), each into a fresh empty
   downstream (a new bare repository and an empty LFS storage for it):
   * kalandra: `kalandra sync --json UP DOWN`, KALANDRA_UPSTREAM_TOKEN and
     KALANDRA_DOWNSTREAM_TOKEN set to the two LFS tokens (timed);
   * naive: `git clone --mirror UP M` + `git lfs fetch --all` (in M) + `git push --mirror
     DOWN` + `git lfs push --all DOWN`, one `sh -c` timed as a whole, credentials as
     `lfs:TOKEN@` in the URLs (as the test harness does).
   After each, outside the timing: downstream's refs equal upstream's, and every LFS
   object is in downstream's giftless storage with its sha256.

Measured (bench/run.py's `measure`): wall time; peak RSS (kalandra's own VmHWM; for the
naive `sh` tree the max over 20 ms samples of the tree's summed VmRSS, and wait4's
ru_maxrss, its largest single process); local disk: kalandra's write_bytes (/proc/PID/io,
its own threads and the whole tree) and the naive mirror's `du -sb` (including its
lfs/objects) plus the naive tree's write_bytes; for information the servers' RSS
(nginx, fcgiwrap, both giftless) and both giftless' CPU seconds.

This is a benchmark, not a test: it asserts nothing about timings.

    python3 bench/lfs.py                      # 50 objects x 4 MiB, 3 repetitions
    python3 bench/lfs.py --repeat 1
    python3 bench/lfs.py --kalandra /path/to/kalandra --json out.json
"""

from __future__ import annotations

import argparse
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
LFS_DIR = ROOT / "tests" / "lfs"
GENERATOR_VERSION = 1
PER_COMMIT = 5
UP_TOKEN = "bench-up-token-5f1a"
DOWN_TOKEN = "bench-down-token-92c7"
UP_REPO = "acme/up.git"

# what `git lfs install --skip-repo` writes (tests/it/lfs_server.rs LFS_GIT_CONFIG); giftless
# has no locks API
LFS_GIT_CONFIG = """[filter "lfs"]
\tclean = git-lfs clean -- %f
\tsmudge = git-lfs smudge -- %f
\tprocess = git-lfs filter-process
\trequired = true
[lfs]
\tlocksverify = false
"""


def program(name: str) -> str:
    for d in [*os.environ.get("PATH", "").split(":"), "/usr/sbin", "/sbin", "/usr/local/sbin"]:
        p = Path(d) / name
        if d and p.is_file():
            return str(p)
    sys.exit(f"{name} is not installed (tests/run.sh installs nginx, fcgiwrap and git-lfs)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class World:
    """The temporary directory: a global git config with git-lfs' filters, repositories,
    servers' files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.gitconfig = root / "gitconfig"
        self.gitconfig.write_text(LFS_GIT_CONFIG)

    def env(self, **extra: str) -> dict[str, str]:
        """bench/run.py's environment (TZ, LANG, pinned dates, no system config) with git-lfs'
        filters as the global config."""
        e = run.env()
        e.pop("GIT_DIR", None)
        e["GIT_CONFIG_GLOBAL"] = str(self.gitconfig)
        e["HOME"] = str(self.root / "home")
        (self.root / "home").mkdir(exist_ok=True)
        e.update(extra)
        return e

    def git(self, *args: str, cwd: Path | None = None) -> str:
        r = subprocess.run(["git", *args], cwd=cwd, env=self.env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        if r.returncode:
            raise RuntimeError(f"git {' '.join(args)[:300]} failed ({r.returncode}): "
                               f"{r.stderr.decode(errors='replace')[-1500:]}")
        return r.stdout.decode()


class Giftless:
    """One giftless (Flask's server, threads) with its own storage and token, as
    tests/it/lfs_server.rs starts it."""

    def __init__(self, world: World, name: str, token: str, storage: Path) -> None:
        python = LFS_DIR / ".venv" / "bin" / "python"
        if not python.is_file():
            sys.exit(f"{python} is missing: python3 -m venv tests/lfs/.venv && "
                     "tests/lfs/.venv/bin/pip install -r tests/lfs/requirements.txt")
        self.name, self.token, self.storage = name, token, storage
        self.dir = world.root / f"lfs-{name}"
        self.dir.mkdir()
        storage.mkdir(parents=True, exist_ok=True)
        key = f"kalandra-bench-{name}-{os.getpid()}-{time.time_ns()}"
        text = (LFS_DIR / "giftless.yaml.in").read_text()
        (self.dir / "giftless.yaml").write_text(
            text.replace("@STORAGE@", str(storage)).replace("@JWT_KEY@", key))
        e = {k: v for k, v in os.environ.items() if not k.startswith(("GIFTLESS_", "FLASK_"))}
        e.update(GIFTLESS_CONFIG_FILE=str(self.dir / "giftless.yaml"), KALANDRA_LFS_TOKEN=token,
                 PYTHONPATH=str(LFS_DIR), PYTHONUNBUFFERED="1")
        self.log = self.dir / "giftless.log"
        self.proc = subprocess.Popen(
            [str(python), "-X", f"pycache_prefix={self.dir / 'pycache'}", "-m", "flask",
             "--app", "giftless.wsgi_entrypoint", "run", "--host", "127.0.0.1", "--port", "0",
             "--no-reload", "--no-debugger", "--with-threads"],
            cwd=self.dir, env=e, stdin=subprocess.DEVNULL, stdout=open(self.log, "wb"),
            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            t = self.log.read_text(errors="replace")
            if "Running on http://127.0.0.1:" in t:
                rest = t.split("Running on http://127.0.0.1:", 1)[1]
                self.port = int("".join(c for c in rest[:6] if c.isdigit()))
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"giftless {name} did not start:\n{t[-3000:]}")
            time.sleep(0.05)

    def cpu(self) -> float:
        """CPU seconds of the giftless process (all its threads) so far."""
        f = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 15)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


class Nginx:
    """nginx + fcgiwrap + git http-backend for world.root, with a location per giftless."""

    def __init__(self, world: World, lfs: list[Giftless]) -> None:
        d = self.dir = world.root / "nginx"
        for sub in ("logs", "tmp"):
            (d / sub).mkdir(parents=True)
        self.port = free_port()
        sock = d / "fcgi.sock"
        cfg = d / "server.gitconfig"
        cfg.write_text("[uploadpack]\n\tallowFilter = true\n[receive]\n\tautogc = false\n"
                       "[gc]\n\tauto = 0\n")
        backend = Path(world.git("--exec-path").strip()) / "git-http-backend"
        user = "user root;\n" if os.geteuid() == 0 else ""
        locations = ""
        for g in lfs:
            locations += f"""    location ~ ^/lfs-{g.name}/(.+\\.git/info/lfs/.*)$ {{
      proxy_pass http://127.0.0.1:{g.port}/$1$is_args$args;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Prefix /lfs-{g.name};
      proxy_http_version 1.1;
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_read_timeout 300s;
    }}
    location ~ ^/lfs-{g.name}(/.*)$ {{
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
      fastcgi_param GIT_PROJECT_ROOT {world.root};
      fastcgi_param GIT_HTTP_EXPORT_ALL 1;
      fastcgi_param GIT_CONFIG_NOSYSTEM 1;
      fastcgi_param GIT_CONFIG_GLOBAL {cfg};
      fastcgi_param HOME {d};
      fastcgi_param PATH_INFO $1;
      fastcgi_pass unix:{sock};
    }}
"""
        (d / "nginx.conf").write_text(f"""{user}worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
  log_format bench '$request_method $request_uri $status $request_time $body_bytes_sent';
  access_log {d}/logs/access.log bench;
  client_body_temp_path {d}/tmp/body;
  fastcgi_temp_path {d}/tmp/fastcgi;
  proxy_temp_path {d}/tmp/proxy;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  client_max_body_size 0;
  fastcgi_read_timeout 300s;
  server {{
    listen 127.0.0.1:{self.port} backlog=1024;
{locations}  }}
}}
""")
        self.fcgiwrap = subprocess.Popen(
            [program("fcgiwrap"), "-c", "4", "-s", f"unix:{sock}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(d / "logs/fcgiwrap.log", "wb"), start_new_session=True,
            env=world.env(GIT_CONFIG_GLOBAL=str(cfg)))
        self.nginx = subprocess.Popen(
            [program("nginx"), "-p", str(d), "-c", str(d / "nginx.conf"), "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(d / "logs/nginx.stderr", "wb"), start_new_session=True)
        deadline = time.monotonic() + 15
        while True:
            for p, what in ((self.nginx, "nginx"), (self.fcgiwrap, "fcgiwrap")):
                if p.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"{what} exited at startup; see {d}/logs")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                if sock.exists():
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx/fcgiwrap did not come up in 15 s; see {d}/logs")
            time.sleep(0.02)

    def url(self, side: str, repo: str, token: str | None = None) -> str:
        cred = f"lfs:{token}@" if token else ""
        return f"http://{cred}127.0.0.1:{self.port}/lfs-{side}/{repo}"

    def pids(self) -> list[int]:
        return [self.nginx.pid, self.fcgiwrap.pid]

    def stop(self) -> None:
        for p in (self.nginx, self.fcgiwrap):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, 15)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, 9)
                    p.wait()


# ---------------------------------------------------------------------------
# Generation


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def cache_dir(objects: int, size: int, seed: int) -> Path:
    return WORK_DIR / "lfs" / f"n{objects}-b{size}-s{seed}-g{GENERATOR_VERSION}"


def generate(world: World, srv: Nginx, cache: Path, objects: int, size: int, seed: int) -> dict:
    """Fills the upstream (the world's acme/up.git, then copied to cache/up.git, and the
    upstream giftless' storage cache/storage) through the servers, with the real git-lfs
    client."""
    t0 = time.perf_counter()
    print(f"generating {objects} LFS objects of {fmt_b(size)} into {cache}", file=sys.stderr, flush=True)
    up = world.root / UP_REPO
    world.git("init", "-q", "--bare", "-b", "main", str(up))
    for k, v in (("http.receivepack", "true"), ("uploadpack.allowFilter", "true"),
                 ("receive.autogc", "false"), ("gc.auto", "0")):
        world.git("-C", str(up), "config", k, v)
    work = world.root / "gen-work"
    world.git("init", "-q", "-b", "main", str(work))
    world.git("lfs", "track", "data/*.bin", cwd=work)
    (work / "README.md").write_text("LFS benchmark repository (bench/lfs.py)\n")
    world.git("add", ".gitattributes", "README.md", cwd=work)
    world.git("commit", "-q", "-m", "track data/*.bin with LFS", cwd=work)
    rng = random.Random(seed)
    (work / "data").mkdir()
    oids = []
    for start in range(0, objects, PER_COMMIT):
        for i in range(start, min(objects, start + PER_COMMIT)):
            content = rng.randbytes(size)
            oids.append(hashlib.sha256(content).hexdigest())
            (work / "data" / f"obj-{i:04d}.bin").write_bytes(content)
        with open(work / "README.md", "a") as f:
            f.write(f"objects {start} to {min(objects, start + PER_COMMIT) - 1}\n")
        world.git("add", "-A", cwd=work)
        world.git("commit", "-q", "-m", f"objects {start} to {min(objects, start + PER_COMMIT) - 1}",
                  cwd=work)
    world.git("tag", "-a", "-m", "all objects", "v1.0", cwd=work)
    url = srv.url("up", UP_REPO, UP_TOKEN)
    world.git("lfs", "push", "--all", url, cwd=work)
    world.git("push", "-q", url, "--all", cwd=work)
    world.git("push", "-q", url, "--tags", cwd=work)
    meta = dict(objects=objects, size=size, seed=seed, generator=GENERATOR_VERSION,
                oids=sorted(set(oids)), lfs_bytes=objects * size,
                commits=int(world.git("-C", str(up), "rev-list", "--all", "--count")),
                refs=refs_of(world, up), git_bytes=du(up), seconds=time.perf_counter() - t0)
    shutil.rmtree(work)
    shutil.copytree(up, cache / "up.git", symlinks=True)
    (cache / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    (cache / "DONE").write_text("")
    print(f"generated in {meta['seconds']:.1f} s", file=sys.stderr, flush=True)
    return meta


def refs_of(world: World, repo: Path) -> dict[str, str]:
    out = world.git("-C", str(repo), "for-each-ref", "--format=%(refname) %(objectname)",
                    "refs/heads", "refs/tags")
    return dict(line.split() for line in out.splitlines())


# ---------------------------------------------------------------------------
# Legs


def fresh_down(world: World, down_storage: Path, n: int) -> tuple[str, Path, Path]:
    """Untimed: a new empty bare downstream `acme/down-N.git` and its (empty) storage
    directory, which giftless' LocalStorage needs to exist before concurrent uploads."""
    repo = f"acme/down-{n:02d}.git"
    path = world.root / repo
    world.git("init", "-q", "--bare", "-b", "main", str(path))
    for k, v in (("http.receivepack", "true"), ("receive.autogc", "false"), ("gc.auto", "0")):
        world.git("-C", str(path), "config", k, v)
    store = down_storage / f"acme/down-{n:02d}"
    store.mkdir(parents=True)
    return repo, path, store


def verify(world: World, up: Path, down: Path, store: Path, oids: list[str]) -> dict:
    u, d = refs_of(world, up), refs_of(world, down)
    res: dict = dict(refs_equal=u == d)
    if u != d:
        res["refs_differ"] = sorted(set(u.items()) ^ set(d.items()))[:10]
    bad = []
    for oid in oids:
        p = store / oid
        if not p.is_file():
            bad.append(f"{oid}: missing")
        elif sha256_file(p) != oid:
            bad.append(f"{oid}: content does not match")
    res["lfs_objects_ok"] = len(oids) - len(bad)
    res["lfs_objects_expected"] = len(oids)
    if bad:
        res["lfs_bad"] = bad[:10]
    r = subprocess.run(["git", "-C", str(down), "fsck", "--connectivity-only", "--no-progress"],
                       env=world.env(), capture_output=True, text=True)
    res["fsck_ok"] = r.returncode == 0
    res["ok"] = res["refs_equal"] and not bad and res["fsck_ok"]
    return res


def servers_cpu(lfs: list[Giftless]) -> float:
    return sum(g.cpu() for g in lfs)


def run_kalandra(world: World, srv: Nginx, lfs: list[Giftless], binary: Path, up: Path,
                 down_storage: Path, n: int, oids: list[str]) -> dict:
    repo, down, store = fresh_down(world, down_storage, n)
    cwd = world.root / f"kalandra-{n:02d}"
    (cwd / "tmp").mkdir(parents=True)
    e = world.env(KALANDRA_UPSTREAM_TOKEN=UP_TOKEN, KALANDRA_DOWNSTREAM_TOKEN=DOWN_TOKEN,
                  TMPDIR=str(cwd / "tmp"))
    cpu0 = servers_cpu(lfs)
    m = measure([str(binary), "sync", "--json", srv.url("up", UP_REPO), srv.url("down", repo)],
                cwd=cwd, run_env=e, others=tuple([*srv.pids(), *(g.proc.pid for g in lfs)]))
    res = dict(wall=m["wall"], own_peak_rss=m["own_peak_rss"], max_single_rss=m["max_single_rss"],
               tree_peak_rss=m["tree_peak_rss"], own_write_bytes=m["own_write_bytes"],
               tree_write_bytes=m["tree_write_bytes"], cwd_du_bytes=du(cwd), cpu=m["cpu"],
               giftless_cpu=servers_cpu(lfs) - cpu0, servers_peak_rss=m["others_peak_rss"],
               samples=m["samples"], rc=m["rc"])
    if m["rc"]:
        res["error"] = m["stderr"][-2000:]
    try:
        j = json.loads(m["stdout"])
        res["lfs"] = j.get("lfs")
        res["bytes_relayed"] = j.get("bytes_relayed")
    except (json.JSONDecodeError, TypeError) as e:
        res["json_error"] = f"{e}: {str(m['stdout'])[:300]!r}"
    res["verify"] = verify(world, up, down, store, oids)
    # the report must say every object was copied, with its bytes
    lf = res.get("lfs") or {}
    res["verify"]["report_ok"] = lf.get("objects") == len(oids) and lf.get("bytes") is not None
    res["verify"]["ok"] = res["verify"]["ok"] and res["verify"]["report_ok"]
    shutil.rmtree(down)
    shutil.rmtree(store)
    shutil.rmtree(cwd)
    return res


def run_naive(world: World, srv: Nginx, lfs: list[Giftless], up: Path, down_storage: Path,
              n: int, oids: list[str]) -> dict:
    repo, down, store = fresh_down(world, down_storage, n)
    cwd = world.root / f"naive-{n:02d}"
    (cwd / "tmp").mkdir(parents=True)
    mirror = cwd / "mirror.git"
    up_url, down_url = srv.url("up", UP_REPO, UP_TOKEN), srv.url("down", repo, DOWN_TOKEN)
    # each step's end time on stdout (date is a few ms), to show where the time goes
    script = ('set -e; t() { echo "$1 $(date +%s.%N)"; }; t start; '
              'git clone -q --mirror "$1" "$3"; t clone; cd "$3"; '
              'git lfs fetch --all origin >/dev/null; t lfs_fetch; '
              'git push -q --mirror "$2"; t push; '
              'git lfs push --all "$2" >/dev/null; t lfs_push')
    e = world.env(TMPDIR=str(cwd / "tmp"))
    cpu0 = servers_cpu(lfs)
    m = measure(["sh", "-c", script, "naive", up_url, down_url, str(mirror)], cwd=cwd, run_env=e,
                others=tuple([*srv.pids(), *(g.proc.pid for g in lfs)]))
    res = dict(wall=m["wall"], tree_peak_rss=m["tree_peak_rss"], max_single_rss=m["max_single_rss"],
               tree_write_bytes=m["tree_write_bytes"], mirror_du_bytes=du(mirror) if mirror.exists() else None,
               mirror_lfs_du_bytes=du(mirror / "lfs") if (mirror / "lfs").exists() else None,
               cpu=m["cpu"], giftless_cpu=servers_cpu(lfs) - cpu0, servers_peak_rss=m["others_peak_rss"],
               samples=m["samples"], rc=m["rc"])
    if m["rc"]:
        res["error"] = m["stderr"][-2000:]
    marks = [line.split() for line in (m["stdout"] or "").splitlines() if len(line.split()) == 2]
    res["steps"] = {b[0]: float(b[1]) - float(a[1]) for a, b in zip(marks, marks[1:])}
    res["verify"] = verify(world, up, down, store, oids)
    shutil.rmtree(down)
    shutil.rmtree(store)
    shutil.rmtree(cwd)
    return res


# ---------------------------------------------------------------------------
# Report


def median(runs: list[dict], key: str):
    vals = [r.get(key) for r in runs]
    nums = [v for v in vals if isinstance(v, (int, float))]
    return statistics.median(nums) if nums and len(nums) == len(vals) else None


def table(report: dict) -> str:
    k, n = report["kalandra"], report["naive"]
    km = {key: median(k, key) for key in ("wall", "own_peak_rss", "tree_peak_rss", "max_single_rss",
                                           "own_write_bytes", "tree_write_bytes", "cpu", "giftless_cpu")}
    nm = {key: median(n, key) for key in ("wall", "tree_peak_rss", "max_single_rss", "mirror_du_bytes",
                                           "tree_write_bytes", "cpu", "giftless_cpu")}

    def ratio(a, b) -> str:
        if a is None or b is None:
            return "—"
        if b == 0:
            return "—" if a == 0 else "∞"
        return f"{a / b:.2f}×" if a / b >= 0.01 or a == 0 else f"{a / b:.4f}×"

    rows = ["| | kalandra | naive | kalandra / naive |", "|---|---|---|---|"]
    rows.append(f"| wall | {fmt_s(km['wall'])} | {fmt_s(nm['wall'])} | {ratio(km['wall'], nm['wall'])} |")
    rows.append(f"| peak RSS (kalandra: own VmHWM; naive: tree sum) | {fmt_b(km['own_peak_rss'])} | "
                f"{fmt_b(nm['tree_peak_rss'])} | {ratio(km['own_peak_rss'], nm['tree_peak_rss'])} |")
    rows.append(f"| largest single process (wait4 ru_maxrss) | {fmt_b(km['max_single_rss'])} | "
                f"{fmt_b(nm['max_single_rss'])} | {ratio(km['max_single_rss'], nm['max_single_rss'])} |")
    rows.append(f"| local disk (kalandra: write_bytes; naive: mirror du) | {fmt_b(km['own_write_bytes'])} | "
                f"{fmt_b(nm['mirror_du_bytes'])} | {ratio(km['own_write_bytes'], nm['mirror_du_bytes'])} |")
    rows.append(f"| write_bytes, whole process tree | {fmt_b(km['tree_write_bytes'])} | "
                f"{fmt_b(nm['tree_write_bytes'])} | {ratio(km['tree_write_bytes'], nm['tree_write_bytes'])} |")
    rows.append(f"| client CPU (rusage, with reaped children) | {fmt_s(km['cpu'])} | {fmt_s(nm['cpu'])} | "
                f"{ratio(km['cpu'], nm['cpu'])} |")
    rows.append(f"| both giftless' CPU meanwhile | {fmt_s(km['giftless_cpu'])} | {fmt_s(nm['giftless_cpu'])} | "
                f"{ratio(km['giftless_cpu'], nm['giftless_cpu'])} |")
    steps = {st: statistics.median([r["steps"].get(st, 0) for r in n]) for st in
             ("clone", "lfs_fetch", "push", "lfs_push")} if n and all(r.get("steps") for r in n) else {}
    if steps:
        rows.append("| naive's steps (medians) | | " + ", ".join(f"{st} {fmt_s(v)}" for st, v in steps.items())
                    + " | |")
    ok = lambda runs: "yes" if runs and all(r["rc"] == 0 and r["verify"]["ok"] for r in runs) else "NO"  # noqa: E731
    rows.append(f"| verified (refs, every object's sha256, fsck) | {ok(k)} | {ok(n)} | |")
    return "\n".join(rows)


def ensure_kalandra(path: str | None) -> Path:
    if path:
        p = Path(path).resolve()
    else:
        target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
        if not target.is_absolute():
            target = ROOT / target
        p = target / "release" / "kalandra"
        if not p.exists():
            print("building kalandra: cargo build --release", file=sys.stderr)
            subprocess.run(["cargo", "build", "--release", "--bin", "kalandra"], cwd=ROOT, check=True)
    if not p.exists():
        sys.exit(f"no kalandra binary at {p}")
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--objects", type=int, default=50, help="LFS objects (5 per commit)")
    ap.add_argument("--size", type=int, default=4 << 20, help="bytes per object")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3, help="repetitions; medians are reported")
    ap.add_argument("--kalandra", help="the kalandra binary (default: $CARGO_TARGET_DIR or target/, "
                                       "release/kalandra, built if missing)")
    ap.add_argument("--json", metavar="FILE", help="also write the JSON report here ('-' for stdout)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()
    program("git-lfs")
    binary = ensure_kalandra(a.kalandra)
    cache = cache_dir(a.objects, a.size, a.seed)
    if cache.exists() and not (cache / "DONE").exists():
        shutil.rmtree(cache)
    generated = (cache / "DONE").exists()
    cache.mkdir(parents=True, exist_ok=True)

    WORK_DIR.mkdir(exist_ok=True)
    world = World(Path(tempfile.mkdtemp(prefix=f"tmp-lfs-{os.getpid()}-", dir=WORK_DIR)))
    lfs: list[Giftless] = []
    srv = None
    report: dict = dict(objects=a.objects, size=a.size, seed=a.seed, repeat=a.repeat,
                        kalandra=str(binary), git=world.git("--version").strip(),
                        git_lfs=subprocess.run(["git-lfs", "version"], capture_output=True,
                                               text=True).stdout.strip(),
                        nproc=os.cpu_count(), loadavg_start=os.getloadavg(),
                        started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        kalandra_runs=[], naive_runs=[])
    try:
        # upstream's storage is the cache's (never written to after generation)
        lfs.append(Giftless(world, "up", UP_TOKEN, cache / "storage"))
        lfs.append(Giftless(world, "down", DOWN_TOKEN, world.root / "down-storage"))
        (cache / "storage" / "acme" / "up").mkdir(parents=True, exist_ok=True)
        srv = Nginx(world, lfs)
        (world.root / "acme").mkdir()
        up = world.root / UP_REPO
        if generated:
            meta = json.loads((cache / "meta.json").read_text())
            # the world serves a copy of the cached upstream's git data (small: pointers only)
            shutil.copytree(cache / "up.git", up, symlinks=True)
        else:
            meta = generate(world, srv, cache, a.objects, a.size, a.seed)
        assert refs_of(world, up) == meta["refs"]
        oids = meta["oids"]
        report["repo"] = {k: v for k, v in meta.items() if k != "oids"}
        k_runs, n_runs = [], []
        n = 0
        for i in range(a.repeat):
            for leg in (("kalandra", "naive") if i % 2 == 0 else ("naive", "kalandra")):
                n += 1
                if leg == "kalandra":
                    r = run_kalandra(world, srv, lfs, binary, up, world.root / "down-storage", n, oids)
                    k_runs.append(r)
                    extra = f" lfs={r.get('lfs')}"
                else:
                    r = run_naive(world, srv, lfs, up, world.root / "down-storage", n, oids)
                    n_runs.append(r)
                    extra = f" mirror du {fmt_b(r['mirror_du_bytes'])}"
                print(f"   [{i + 1}/{a.repeat}] {leg} {fmt_s(r['wall'])} rc={r['rc']} "
                      f"verified={r['verify']['ok']}{extra}", file=sys.stderr, flush=True)
                if r["rc"]:
                    print(r.get("error", ""), file=sys.stderr)
        report["kalandra_runs"], report["naive_runs"] = k_runs, n_runs
    finally:
        if srv:
            srv.stop()
        for g in lfs:
            g.stop()
        if not a.keep:
            shutil.rmtree(world.root, ignore_errors=True)
    report["loadavg_end"] = os.getloadavg()
    report["kalandra"], report["naive"] = report.pop("kalandra_runs"), report.pop("naive_runs")
    report["kalandra_binary"] = str(binary)
    t = table(report)
    print(f"\nupstream: {meta['objects']} LFS objects of {fmt_b(meta['size'])} "
          f"({fmt_b(meta['lfs_bytes'])}), {meta['commits']} commits, {len(meta['refs'])} refs; "
          f"{report['git']}; {report['git_lfs']}; repeat {a.repeat} (medians); "
          f"load average {report['loadavg_start'][0]:.2f} -> {report['loadavg_end'][0]:.2f} "
          f"on {os.cpu_count()} CPUs")
    print(t)
    run.save_report(report, f"lfs-n{a.objects}-b{a.size}", a.json)


if __name__ == "__main__":
    main()
