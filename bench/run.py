#!/usr/bin/env python3
"""Kalandra benchmark runner (Python 3.11, standard library only).

For each scenario it measures, in the same run and against the same repositories:

* kalandra: `kalandra sync --json UP DOWN` wall time, kalandra's own peak RSS
  (VmHWM of its process only), the bytes kalandra's own threads caused to be
  written to disk (write_bytes), plus, for information, the whole process
  tree's peak RSS and the tree's write_bytes; every sync is verified end to end
  (refs equal, `git fsck --connectivity-only`), outside the timing;
* the naive baseline: a local mirror clone and `push --mirror`
  (initial: `git clone --mirror` + `git push --mirror`;
   incremental/no-op: `git fetch --prune` + `git push --mirror` in an existing mirror);
* the physical floors: upstream generating the pack alone
  (`git pack-objects --revs --thin --stdout --delta-base-offset`, exactly what
  `git upload-pack` runs, with the same wants/haves, into a counting pipe) and
  downstream indexing that pack alone (`git index-pack --stdin --fix-thin`, what
  `git receive-pack` runs); for information also the two legs connected by a
  pipe, and, for no-op, reading each side's ref advertisement (`git ls-remote`).

This is a benchmark, not a test: it asserts nothing about timings.

    python3 bench/run.py --size small --repeat 3
    python3 bench/run.py --size small --scenario initial --kalandra /path/to/kalandra
    python3 bench/run.py --size tiny --repeat 1 --no-kalandra     # harness smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_repo  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
WORK_DIR = BENCH_DIR / "work"
SCENARIOS = ("initial", "incremental", "noop")
POLL = 0.020  # seconds between /proc samples
FAST_POLL, FAST_FOR = 0.001, 0.100  # sample every 1 ms during the first 100 ms (short runs)

# What `git upload-pack` runs (git 2.47, checked with GIT_TRACE; it adds
# --progress/-q and, if the client asks, --include-tag / --shallow-file).
PACK_OBJECTS = ["pack-objects", "--revs", "--thin", "--stdout", "--delta-base-offset"]
# What `git receive-pack` runs when the pack has more than receive.unpackLimit objects
# (it also passes --pack_header, --keep and --report-end-of-input, and indexes into a
# quarantine directory).
INDEX_PACK = ["index-pack", "--stdin", "--fix-thin"]


def env() -> dict[str, str]:
    e = gen_repo.git_env()
    e["GIT_TERMINAL_PROMPT"] = "0"
    return e


def git(*args: str, cwd: Path | None = None, capture: bool = True, check: bool = True) -> str:
    r = subprocess.run(["git", *args], cwd=cwd, env=env(),
                       stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    if check and r.returncode:
        raise RuntimeError(f"git {' '.join(args)[:300]} failed ({r.returncode}): {r.stderr[-1000:]}")
    return r.stdout if capture else ""


def url(p: Path) -> str:
    return "file://" + str(p)


# ---------------------------------------------------------------------------
# Process measurement


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _field(text: str | None, name: str) -> int | None:
    if not text:
        return None
    for line in text.splitlines():
        if line.startswith(name):
            return int(line.split()[1])
    return None


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tasks:
        c = _read(f"/proc/{pid}/task/{t}/children")
        if c:
            out.extend(int(x) for x in c.split())
    return out


def _descendants(pid: int) -> list[int]:
    todo, seen = _children(pid), []
    while todo:
        c = todo.pop()
        seen.append(c)
        todo.extend(_children(c))
    return seen


def _own_cpu(pid: int) -> float | None:
    """utime + stime (seconds) of the process itself, children excluded, from
    /proc/PID/stat; read while it is a zombie, so the figures are final."""
    st = _read(f"/proc/{pid}/stat")
    if not st:
        return None
    f = st.rsplit(")", 1)[1].split()  # f[0] is field 3 (state); utime, stime are fields 14, 15
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def measure(cmd: list[str], *, stdin: Path | None = None, stdout: str = "capture",
            cwd: Path | None = None, run_env: dict[str, str] | None = None,
            others: tuple[int, ...] = (), stderr_tail: int = 4000,
            stderr_file: Path | None = None) -> dict:
    """Run cmd and sample /proc every POLL seconds (every FAST_POLL during the
    first FAST_FOR seconds) until it exits.

    own_peak_rss: the process's VmHWM (kB -> bytes) at the last sample before it exited.
    own_write_bytes: sum over the process's own threads of /proc/PID/task/TID/io
        write_bytes (per thread, so it does NOT include children it reaped; the
        process-wide /proc/PID/io does, and is reported as tree_write_bytes).
    tree_peak_rss: max over samples of the sum of VmRSS over the process and all its
        descendants.  max_single_rss: ru_maxrss from wait4 (largest single process in
        the tree, the process included).
    stdout: "capture" (kept, decoded), "count" (drained and counted), or "null".
    run_env: the environment (default env()).  others: pids of other process trees
    (servers, say) sampled at the same times: others_peak_rss is the max over samples
    of the sum of their trees' VmRSS.  stderr_tail: how many characters of stderr to keep.
    stderr_file: also append stderr there as it comes (to follow a long run).
    """
    fin = open(stdin, "rb") if stdin else subprocess.DEVNULL
    out_target = {"capture": subprocess.PIPE, "count": subprocess.PIPE, "null": subprocess.DEVNULL}[stdout]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=fin, stdout=out_target, stderr=subprocess.PIPE, env=run_env or env(), cwd=cwd)
    pid = p.pid
    chunks: list[bytes] = []
    errs: list[bytes] = []
    counted = [0]

    def drain_out() -> None:
        assert p.stdout is not None
        while True:
            b = p.stdout.read1(1 << 20) if hasattr(p.stdout, "read1") else p.stdout.read(1 << 20)
            if not b:
                break
            if stdout == "capture":
                chunks.append(b)
            counted[0] += len(b)

    def drain_err() -> None:
        assert p.stderr is not None
        tee = open(stderr_file, "ab") if stderr_file else None
        for b in iter(lambda: p.stderr.read1(65536), b""):
            errs.append(b)
            if tee:
                tee.write(b)
                tee.flush()
        if tee:
            tee.close()

    st_ = dict(hwm=None, tree_peak=0, samples=0, others_peak=0)

    def tree_rss(root: int) -> int:
        return sum(_field(_read(f"/proc/{c}/status"), "VmRSS:") or 0 for c in [root, *_descendants(root)])
    thread_writes: dict[str, int] = {}

    def sample() -> None:
        st = _read(f"/proc/{pid}/status")
        h = _field(st, "VmHWM:")
        if h is not None:
            st_["hwm"] = h
            rss = _field(st, "VmRSS:") or 0
            for c in _descendants(pid):
                rss += _field(_read(f"/proc/{c}/status"), "VmRSS:") or 0
            st_["tree_peak"] = max(st_["tree_peak"], rss)
            st_["samples"] += 1
            if others:
                st_["others_peak"] = max(st_["others_peak"], sum(tree_rss(o) for o in others))
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                w = _field(_read(f"/proc/{pid}/task/{tid}/io"), "write_bytes:")
                if w is not None:
                    thread_writes[tid] = w
        except OSError:
            pass

    sample()  # at once: short-lived processes may be gone after the first interval

    threads = [threading.Thread(target=drain_err, daemon=True)]
    if stdout != "null":
        threads.append(threading.Thread(target=drain_out, daemon=True))
    for t in threads:
        t.start()

    exited = threading.Event()
    t_exit = [0.0]

    def waiter() -> None:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # wait for exit, leave the zombie
        t_exit[0] = time.perf_counter()
        exited.set()

    threading.Thread(target=waiter, daemon=True).start()
    while not exited.is_set():
        exited.wait(FAST_POLL if time.perf_counter() - t0 < FAST_FOR else POLL)
        if not exited.is_set():
            sample()

    # zombie: the leader thread's own counter is final; the process-wide one includes
    # every thread and every child the process reaped
    w = _field(_read(f"/proc/{pid}/task/{pid}/io"), "write_bytes:")
    if w is not None:
        thread_writes[str(pid)] = w
    tree_w = _field(_read(f"/proc/{pid}/io"), "write_bytes:")
    own_cpu = _own_cpu(pid)
    _, status, ru = os.wait4(pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    for t in threads:
        t.join()
    if stdin:
        fin.close()  # type: ignore[union-attr]
    hwm, tree_peak, samples = st_["hwm"], st_["tree_peak"], st_["samples"]
    return dict(
        cmd=cmd, rc=p.returncode, wall=t_exit[0] - t0,
        own_peak_rss=hwm * 1024 if hwm is not None else None,
        own_write_bytes=sum(thread_writes.values()) if thread_writes else None,
        tree_peak_rss=tree_peak * 1024 if samples else None,
        tree_write_bytes=tree_w,
        max_single_rss=ru.ru_maxrss * 1024,
        cpu=ru.ru_utime + ru.ru_stime,  # the process and every descendant it waited for
        own_cpu=own_cpu,  # the process alone (its threads, not its children)
        others_peak_rss=st_["others_peak"] * 1024,
        samples=samples,
        stdout=b"".join(chunks).decode(errors="replace") if stdout == "capture" else None,
        stdout_bytes=counted[0],
        stderr=b"".join(errs).decode(errors="replace")[-stderr_tail:],
    )


# ---------------------------------------------------------------------------
# Repositories


def refs(repo: Path) -> dict[str, str]:
    out = git("-C", str(repo), "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads", "refs/tags")
    return dict(l.split() for l in out.splitlines())


def du(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True,
                              check=True).stdout.split()[0])


def init_bare(path: Path) -> Path:
    git("init", "-q", "--bare", "--object-format=sha1", str(path))
    # keep background maintenance out of the timings
    git("-C", str(path), "config", "receive.autogc", "false")
    git("-C", str(path), "config", "gc.auto", "0")
    return path


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def verify(up: Path, down: Path, fsck: bool) -> dict:
    u, d = refs(up), refs(down)
    ok = u == d
    res: dict = dict(refs_equal=ok)
    if not ok:
        res["missing"] = sorted(set(u) - set(d))[:10]
        res["extra"] = sorted(set(d) - set(u))[:10]
        res["differ"] = sorted(r for r in set(u) & set(d) if u[r] != d[r])[:10]
    if fsck:
        r = subprocess.run(["git", "-C", str(down), "fsck", "--connectivity-only", "--no-progress"],
                           env=env(), capture_output=True, text=True)
        res["fsck_ok"] = r.returncode == 0
        if r.returncode:
            res["fsck_err"] = r.stderr[-2000:]
    return res


class Setup:
    """Per-run templates: the downstream states each scenario starts from."""

    def __init__(self, repo_dir: Path, tmp: Path) -> None:
        self.up = repo_dir / "upstream.git"
        self.tmp = tmp
        self.meta = json.loads((repo_dir / "meta.json").read_text())
        self.base_refs = dict(
            (ref, oid) for oid, ref in (l.split() for l in (repo_dir / "base-refs.txt").read_text().splitlines()))
        self._templates: dict[str, Path] = {}
        self.n = 0

    def fresh(self, name: str) -> Path:
        self.n += 1
        return self.tmp / f"{self.n:03d}-{name}"

    def template(self, scenario: str) -> Path:
        """Untimed: a bare repository in the state downstream has before the sync."""
        if scenario in self._templates:
            return self._templates[scenario]
        t = init_bare(self.tmp / f"template-{scenario}.git")
        if scenario == "incremental":
            specs = [f"{oid}:{ref}" for ref, oid in sorted(self.base_refs.items())]
            git("-C", str(self.up), "push", "-q", url(t), *specs)
            assert refs(t) == self.base_refs
        elif scenario == "noop":
            git("-C", str(self.up), "push", "-q", "--mirror", url(t))
        self._templates[scenario] = t
        return t

    def downstream(self, scenario: str) -> Path:
        return copy(self.template(scenario), self.fresh(f"down-{scenario}.git"))

    def mirror(self, scenario: str) -> Path:
        """Untimed: the naive tool's existing local mirror clone, at downstream's state."""
        m = copy(self.template(scenario), self.fresh(f"naive-{scenario}.git"))
        for k, v in (("remote.origin.url", url(self.up)), ("remote.origin.fetch", "+refs/*:refs/*"),
                     ("remote.origin.mirror", "true")):
            git("-C", str(m), "config", k, v)
        return m

    def wants_haves(self, scenario: str) -> tuple[list[str], list[str]]:
        u = set(refs(self.up).values())
        d = set(refs(self.template(scenario)).values())
        return sorted(u - d), sorted(d)


# ---------------------------------------------------------------------------
# Legs


def run_kalandra(s: Setup, scenario: str, binary: Path) -> dict:
    down = s.downstream(scenario)
    m = measure([str(binary), "sync", "--json", url(s.up), url(down)])
    res = dict(wall=m["wall"], own_peak_rss=m["own_peak_rss"], own_write_bytes=m["own_write_bytes"],
               tree_peak_rss=m["tree_peak_rss"], tree_write_bytes=m["tree_write_bytes"],
               max_single_rss=m["max_single_rss"], samples=m["samples"], rc=m["rc"])
    if m["rc"] != 0:
        res["error"] = m["stderr"][-1500:]
    else:
        try:
            j = json.loads(m["stdout"])
            res["bytes_relayed"] = j.get("bytes_relayed")
            pk = j.get("pack") or {}
            res["pack_objects"] = pk.get("objects")
            res["pack_bytes"] = pk.get("bytes")
        except (json.JSONDecodeError, AttributeError) as e:
            res["json_error"] = f"{e}: {m['stdout'][:300]!r}"
    res["verify"] = verify(s.up, down, fsck=True)
    shutil.rmtree(down)
    return res


def run_naive(s: Setup, scenario: str) -> dict:
    down = s.downstream(scenario)
    if scenario == "initial":
        mirror = s.fresh("naive-initial.git")
        a = measure(["git", "clone", "--mirror", "-q", url(s.up), str(mirror)])
    else:
        mirror = s.mirror(scenario)
        a = measure(["git", "-C", str(mirror), "fetch", "--prune", "-q", "origin"])
    b = measure(["git", "-C", str(mirror), "push", "--mirror", "-q", url(down)])
    res = dict(wall=a["wall"] + b["wall"], fetch_wall=a["wall"], push_wall=b["wall"],
               tree_peak_rss=max(a["tree_peak_rss"] or 0, b["tree_peak_rss"] or 0),
               max_single_rss=max(a["max_single_rss"], b["max_single_rss"]),
               tree_write_bytes=(a["tree_write_bytes"] or 0) + (b["tree_write_bytes"] or 0),
               mirror_du_bytes=du(mirror), rc=a["rc"] or b["rc"])
    if res["rc"]:
        res["error"] = (a["stderr"] + b["stderr"])[-1500:]
    res["verify"] = verify(s.up, down, fsck=False)
    shutil.rmtree(mirror)
    shutil.rmtree(down)
    return res


def run_floors(s: Setup, scenario: str, packfile: Path) -> dict:
    wants, haves = s.wants_haves(scenario)
    revs = s.fresh("revs.txt")
    revs.write_text("".join(w + "\n" for w in wants) + "--not\n" + "".join(h + "\n" for h in haves) + "\n")
    res: dict = dict(wants=len(wants), haves=len(haves))
    if wants:
        # 1. upstream generating the pack alone, into a counting pipe
        a = measure(["git", "-C", str(s.up), *PACK_OBJECTS, "-q"], stdin=revs, stdout="count")
        res["pack_objects_wall"] = a["wall"]
        res["pack_objects_peak_rss"] = a["own_peak_rss"]
        res["pack_bytes"] = a["stdout_bytes"]
        if not packfile.exists():  # untimed copy of the pack for the index-pack leg
            with open(revs, "rb") as fi, open(packfile, "wb") as fo:
                subprocess.run(["git", "-C", str(s.up), *PACK_OBJECTS, "-q"], stdin=fi, stdout=fo,
                               env=env(), check=True)
        # 2. downstream indexing that pack alone (into the downstream's starting state)
        down = s.downstream(scenario)
        b = measure(["git", "-C", str(down), *INDEX_PACK], stdin=packfile, stdout="null")
        res["index_pack_wall"] = b["wall"]
        res["index_pack_peak_rss"] = b["own_peak_rss"]
        with open(packfile, "rb") as fh:
            res["pack_objects_count"] = int.from_bytes(fh.read(12)[8:12], "big")
        shutil.rmtree(down)
        # 3. information: both legs connected by a pipe
        down = s.downstream(scenario)
        with open(revs, "rb") as fi:
            t0 = time.perf_counter()
            po = subprocess.Popen(["git", "-C", str(s.up), *PACK_OBJECTS, "-q"], stdin=fi,
                                  stdout=subprocess.PIPE, env=env())
            ip = subprocess.Popen(["git", "-C", str(down), *INDEX_PACK], stdin=po.stdout,
                                  stdout=subprocess.DEVNULL, env=env())
            assert po.stdout is not None
            po.stdout.close()
            ip.wait()
            po.wait()
            res["pipeline_wall"] = time.perf_counter() - t0
        shutil.rmtree(down)
        res["floor_wall"] = max(res["pack_objects_wall"], res["index_pack_wall"])
    else:
        res["pack_bytes"] = 0
    # ref advertisements of both sides (the floor of a no-op sync)
    down = s.downstream(scenario)
    ua = measure(["git", "ls-remote", url(s.up)], stdout="null")
    da = measure(["git", "ls-remote", url(down)], stdout="null")
    shutil.rmtree(down)
    res["adv_up_wall"], res["adv_down_wall"] = ua["wall"], da["wall"]
    if not wants:
        res["floor_wall"] = max(ua["wall"], da["wall"])
    revs.unlink()
    return res


# ---------------------------------------------------------------------------
# Aggregation and report


def median_dict(runs: list[dict]) -> dict:
    out: dict = {}
    keys = {k for r in runs for k in r}
    for k in sorted(keys):
        vals = [r.get(k) for r in runs]
        nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if nums and len(nums) == len(vals):
            out[k] = statistics.median(nums)
        elif all(isinstance(v, dict) for v in vals if v is not None) and any(isinstance(v, dict) for v in vals):
            if k == "verify":
                out[k] = dict(all_ok=all(v and v.get("refs_equal") and v.get("fsck_ok", True) for v in vals),
                              runs=vals)
            else:
                out[k] = vals
        else:
            out[k] = vals[0] if len({json.dumps(v, sort_keys=True) for v in vals}) == 1 else vals
    return out


def fmt_s(v) -> str:
    return "—" if v is None else f"{v:.2f} s" if v >= 0.1 else f"{v * 1000:.0f} ms"


def fmt_b(v) -> str:
    if v is None:
        return "—"
    if v < 1024:
        return f"{v:.0f} B"
    if v < 1 << 20:
        return f"{v / 1024:.0f} KiB"
    if v < 1 << 30:
        return f"{v / (1 << 20):.1f} MiB"
    return f"{v / (1 << 30):.2f} GiB"


def table(report: dict) -> str:
    rows = []
    hdr = ("scenario", "pack", "kalandra wall", "kalandra peak RSS", "kalandra disk writes",
           "tree peak RSS", "naive wall", "naive mirror du", "floor: pack-objects", "floor: index-pack",
           "pipe (info)", "k / floor", "k / naive", "verified")
    rows.append("| " + " | ".join(hdr) + " |")
    rows.append("|" + "---|" * len(hdr))
    for sc, r in report["scenarios"].items():
        k, n, f = r.get("kalandra"), r.get("naive"), r.get("floors") or {}
        if k is None:
            kw = krss = kwr = ktree = kf = kn = ver = "pending"
        elif any(x.get("rc") for x in k["runs"]):
            kw = krss = kwr = ktree = kf = kn = "FAILED"
            ver = "—"
        else:
            km = k["median"]
            kw, kwr, ktree = fmt_s(km["wall"]), fmt_b(km["own_write_bytes"]), fmt_b(km["tree_peak_rss"])
            # a process that exits before the first /proc sample has no VmHWM reading;
            # wait4's ru_maxrss (largest process of the tree) is then an upper bound
            krss = fmt_b(km["own_peak_rss"]) if km["own_peak_rss"] is not None \
                else f"≤ {fmt_b(km['max_single_rss'])}"
            kf = f"{km['wall'] / f['floor_wall']:.2f}×" if f.get("floor_wall") else "—"
            kn = f"{km['wall'] / n['median']['wall']:.2f}×" if n else "—"
            ver = "yes" if km["verify"]["all_ok"] else "NO"
        nm = n["median"] if n else {}
        pack = f"{fmt_b(f.get('pack_bytes'))}" if f else "—"
        rows.append("| " + " | ".join((
            sc, pack, kw, krss, kwr, ktree,
            fmt_s(nm.get("wall")), fmt_b(nm.get("mirror_du_bytes")),
            fmt_s(f.get("pack_objects_wall")) if f.get("wants") else f"adv {fmt_s(f.get('adv_up_wall'))}",
            fmt_s(f.get("index_pack_wall")) if f.get("wants") else f"adv {fmt_s(f.get('adv_down_wall'))}",
            fmt_s(f.get("pipeline_wall")), kf, kn, ver)) + " |")
    return "\n".join(rows)


def ensure_kalandra(path: str | None, build: bool) -> Path | None:
    if path:
        p = Path(path).resolve()
        return p if p.exists() else None
    p = ROOT / "target" / "release" / "kalandra"
    if not p.exists() and build:
        print("building kalandra: cargo build --release", file=sys.stderr)
        r = subprocess.run(["cargo", "build", "--release", "--bin", "kalandra"], cwd=ROOT)
        if r.returncode != 0:
            return None
    return p if p.exists() else None


def probe_kalandra(binary: Path) -> str | None:
    """None if `kalandra sync` looks usable, else why not."""
    r = subprocess.run([str(binary), "sync", "--help"], capture_output=True, text=True, env=env())
    if r.returncode != 0 or "sync" not in (r.stdout + r.stderr).lower():
        return f"`{binary} sync --help` does not work (rc={r.returncode}); kalandra not implemented yet?"
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(gen_repo.SIZES), default="small")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scenario", action="append", choices=SCENARIOS,
                    help="repeatable; default: all three")
    ap.add_argument("--repeat", type=int, default=3, help="repetitions; medians are reported")
    ap.add_argument("--kalandra", help="path to the kalandra binary (default: target/release/kalandra, "
                                       "built with cargo build --release if missing)")
    ap.add_argument("--no-kalandra", action="store_true", help="skip kalandra (naive and floors only)")
    ap.add_argument("--no-naive", action="store_true")
    ap.add_argument("--no-floors", action="store_true")
    ap.add_argument("--gen-threads", type=int, default=0, help="pack.threads when generating the repository")
    ap.add_argument("--json", metavar="FILE", help="also write the JSON report here ('-' for stdout)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()
    scenarios = a.scenario or list(SCENARIOS)

    repo_dir = gen_repo.generate(a.size, a.seed, a.gen_threads)
    binary = None
    kal_note = None
    if not a.no_kalandra:
        binary = ensure_kalandra(a.kalandra, build=a.kalandra is None)
        if binary is None:
            kal_note = "kalandra binary not found / not buildable"
        else:
            kal_note = probe_kalandra(binary)
            if kal_note:
                binary = None
        if kal_note:
            print(f"note: {kal_note}; kalandra cells will read 'pending'", file=sys.stderr)

    WORK_DIR.mkdir(exist_ok=True)
    tmp = WORK_DIR / f"tmp-{os.getpid()}-{int(time.time())}"
    tmp.mkdir()
    s = Setup(repo_dir, tmp)
    gv = git("--version").strip()
    report: dict = dict(
        size=a.size, seed=a.seed, repo=s.meta, git=gv, kalandra=str(binary) if binary else None,
        kalandra_note=kal_note, repeat=a.repeat, nproc=os.cpu_count(),
        loadavg_start=os.getloadavg(), started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        scenarios={},
    )
    try:
        for sc in scenarios:
            print(f"== {sc}: preparing", file=sys.stderr, flush=True)
            s.template(sc)
            packfile = tmp / f"floor-{sc}.pack"
            runs: dict[str, list[dict]] = dict(kalandra=[], naive=[], floors=[])
            for i in range(a.repeat):
                # interleave the legs so that noise from other load spreads over all of them
                if binary:
                    runs["kalandra"].append(run_kalandra(s, sc, binary))
                    print(f"   [{i + 1}/{a.repeat}] kalandra {fmt_s(runs['kalandra'][-1]['wall'])}"
                          f" rc={runs['kalandra'][-1]['rc']}", file=sys.stderr, flush=True)
                if not a.no_naive:
                    runs["naive"].append(run_naive(s, sc))
                    print(f"   [{i + 1}/{a.repeat}] naive {fmt_s(runs['naive'][-1]['wall'])}",
                          file=sys.stderr, flush=True)
                if not a.no_floors:
                    runs["floors"].append(run_floors(s, sc, packfile))
                    f = runs["floors"][-1]
                    print(f"   [{i + 1}/{a.repeat}] floors pack-objects {fmt_s(f.get('pack_objects_wall'))}"
                          f" index-pack {fmt_s(f.get('index_pack_wall'))}", file=sys.stderr, flush=True)
            r: dict = {}
            for leg in ("kalandra", "naive"):
                if runs[leg]:
                    r[leg] = dict(median=median_dict(runs[leg]), runs=runs[leg])
            if runs["floors"]:
                r["floors"] = median_dict(runs["floors"])
                r["floors_runs"] = runs["floors"]
            report["scenarios"][sc] = r
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    report["loadavg_end"] = os.getloadavg()

    t = table(report)
    print(f"\nrepository: {a.size} seed {a.seed}: {s.meta['objects']} objects, "
          f"{fmt_b(s.meta['pack_bytes'])} pack, {s.meta['commits']} commits, {s.meta['refs']} refs; "
          f"{gv}; repeat {a.repeat} (medians)")
    if kal_note:
        print(f"kalandra: pending ({kal_note})")
    print(t)
    save_report(report, f"{a.size}-s{a.seed}", a.json)


def save_report(report: dict, stem: str, also: str | None) -> None:
    """Writes the JSON report to bench/work/results/STEM-TIME.json, and to `also`
    ('-': stdout) if given."""
    res_dir = WORK_DIR / "results"
    res_dir.mkdir(exist_ok=True)
    text = json.dumps(report, indent=2, default=str) + "\n"
    out = res_dir / f"{stem}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.json"
    out.write_text(text)
    print(f"JSON report: {out}")
    if also == "-":
        print(text, end="")
    elif also:
        Path(also).write_text(text)


if __name__ == "__main__":
    main()
