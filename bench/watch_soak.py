#!/usr/bin/env python3
"""Watch soak: `kalandra watch` keeping 500 mirrors in sync for 10 minutes.

Python 3.11 standard library, git, nginx and fcgiwrap, as bench/fleet.py, whose
generation (`--count 500`), HTTP servers (nginx + fcgiwrap + git http-backend on
loopback, upstreams and downstreams on two ports) and verification it reuses.

What it does:

1. Generates (cached) COUNT small repositories with bench/fleet.py; upstreams are
   served at fleet.py's "new" state, downstreams start at the "old" state, so the
   service's first round is a catch-up of every mirror.
2. Writes a config: `[defaults] interval = INTERVAL` and
   `webhook_secret_env = "KALANDRA_SOAK_SECRET"`, one `[[template]]` of COUNT names,
   then starts `kalandra watch --config FILE --listen 127.0.0.1:PORT --jobs JOBS`
   and waits for `/readyz`.
3. For DURATION seconds from the spawn:
   * every second: kalandra's VmRSS (/proc/PID/status) and open fds (entries of
     /proc/PID/fd); every 10 s, the sum of `kalandra_syncs_total` from /metrics;
   * every HOOK_EVERY seconds (a steady rate, whatever the latencies): a random
     mirror with no push pending gets a new commit on upstream's `main`
     (`git commit-tree` + `git update-ref` on the bare repository on disk,
     untimed), then a GitHub-signed webhook (`X-Hub-Signature-256`, HMAC-SHA256
     of the body) to `POST /hooks/NAME`; the latency is from just before the POST
     to the first poll (`git rev-parse`, every POLL ms) at which downstream's
     `refs/heads/main` is the new commit.
4. At the end: /metrics (syncs by result) and /status; waits (up to FINAL_WAIT s)
   until every downstream's refs equal its upstream's, then reports mismatches;
   SIGTERM, and the time to exit and the exit code.

Prints a markdown summary, writes the JSON report to bench/work/results/ and the plot
(RSS and fds over time, an SVG written here, no matplotlib) to docs/img/watch-soak.svg.

This is a benchmark, not a test: it asserts nothing about timings.

    python3 bench/watch_soak.py                        # 500 mirrors, --jobs 16, 600 s, interval 60s
    python3 bench/watch_soak.py --count 50 --duration 60   # quick harness check
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import hmac
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fleet  # noqa: E402
import run  # noqa: E402
from fleet import ROOT, WORK_DIR, env, git  # noqa: E402

SECRET_ENV = "KALANDRA_SOAK_SECRET"


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None,
         timeout: float = 30) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def proc_sample(pid: int) -> tuple[int, int] | None:
    """(VmRSS bytes, open fds) of pid, or None once it is gone."""
    try:
        rss = 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
        return rss, len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return None


SAMPLE_RE = re.compile(r'^(\w+)\{([^}]*)\}\s+(\S+)')


def parse_metrics(text: str, name: str) -> list[tuple[dict, float]]:
    out = []
    for line in text.splitlines():
        m = SAMPLE_RE.match(line)
        if m and m.group(1) == name:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2)))
            out.append((labels, float(m.group(3))))
    return out


def syncs_by_result(text: str) -> dict[str, int]:
    res: dict[str, int] = {}
    for labels, v in parse_metrics(text, "kalandra_syncs_total"):
        res[labels.get("result", "?")] = res.get(labels.get("result", "?"), 0) + int(v)
    return res


def pct(vals: list[float], p: float) -> float | None:
    if not vals:
        return None
    s = sorted(vals)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]  # nearest rank


def stats(vals: list[float]) -> dict:
    if not vals:
        return {}
    return dict(min=min(vals), median=statistics.median(vals), max=max(vals), n=len(vals))


# ---------------------------------------------------------------------------
# The plot


def svg_plot(samples: list[dict], path: Path, title: str) -> None:
    """Two panels, RSS (MiB) and open fds against seconds since spawn, as polylines."""
    W, PH, L, R, T, GAP = 760, 180, 70, 20, 40, 60
    H = T + 2 * PH + GAP + 45
    t_max = max((s["t"] for s in samples), default=1) or 1
    panels = [("RSS (MiB)", [s["rss"] / 2**20 for s in samples], "#1f77b4"),
              ("open fds", [s["fds"] for s in samples], "#d62728")]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
             f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
             f'<rect width="{W}" height="{H}" fill="white"/>',
             f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="14">{title}</text>']
    for k, (label, ys, colour) in enumerate(panels):
        top = T + k * (PH + GAP)
        y_hi = max(ys, default=1) * 1.15 or 1
        x = lambda t: L + (W - L - R) * t / t_max  # noqa: E731
        y = lambda v: top + PH - PH * v / y_hi  # noqa: E731
        parts.append(f'<rect x="{L}" y="{top}" width="{W - L - R}" height="{PH}" fill="none" stroke="#888"/>')
        for frac in (0, 0.25, 0.5, 0.75, 1):
            v = y_hi * frac
            parts.append(f'<line x1="{L}" y1="{y(v):.1f}" x2="{W - R}" y2="{y(v):.1f}" stroke="#eee"/>')
            parts.append(f'<text x="{L - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.0f}</text>')
        step = 60 if t_max > 240 else 10
        for t in range(0, int(t_max) + 1, step):
            parts.append(f'<line x1="{x(t):.1f}" y1="{top + PH}" x2="{x(t):.1f}" y2="{top + PH + 4}" stroke="#888"/>')
            parts.append(f'<text x="{x(t):.1f}" y="{top + PH + 17}" text-anchor="middle">{t}</text>')
        parts.append(f'<text x="14" y="{top + PH / 2}" transform="rotate(-90 14 {top + PH / 2})" '
                     f'text-anchor="middle">{label}</text>')
        pts = " ".join(f"{x(s['t']):.1f},{y(v):.1f}" for s, v in zip(samples, ys))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="1.3"/>')
    parts.append(f'<text x="{L + (W - L - R) / 2}" y="{H - 8}" text-anchor="middle">'
                 f'seconds since kalandra watch started</text>')
    parts.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts) + "\n")


# ---------------------------------------------------------------------------
# Pushes and webhooks


class Hooks:
    def __init__(self, srv: Path, base: str, secret: bytes, poll: float, timeout: float) -> None:
        self.srv, self.base, self.secret, self.poll, self.timeout = srv, base, secret, poll, timeout
        self.pending: set[str] = set()
        self.lock = threading.Lock()
        self.results: list[dict] = []
        self.n = 0

    def push(self, name: str) -> str:
        """Untimed: a new commit on upstream's main, written into the bare repository."""
        up = str(self.srv / "up" / f"{name}.git")
        old = git("-C", up, "rev-parse", "refs/heads/main").strip()
        self.n += 1
        new = git("-C", up, "commit-tree", f"{old}^{{tree}}", "-p", old,
                  "-m", f"soak push {self.n} {time.time_ns()}").strip()
        git("-C", up, "update-ref", "refs/heads/main", new, old)
        return new

    def fire(self, name: str, t_rel: float) -> None:
        rec: dict = dict(mirror=name, t=round(t_rel, 2))
        try:
            new = self.push(name)
            body = json.dumps(dict(ref="refs/heads/main", after=new)).encode()
            sig = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
            down = str(self.srv / "down" / f"{name}.git")
            t0 = time.monotonic()
            status, _ = http("POST", f"{self.base}/hooks/{name}", body,
                             {"Content-Type": "application/json", "X-GitHub-Event": "push",
                              "X-Hub-Signature-256": sig})
            rec["status"] = status
            rec["post_s"] = round(time.monotonic() - t0, 4)
            while True:
                r = subprocess.run(["git", "-C", down, "rev-parse", "-q", "--verify", "refs/heads/main"],
                                   env=env(), capture_output=True, text=True)
                if r.stdout.strip() == new:
                    rec["latency_s"] = round(time.monotonic() - t0, 4)
                    break
                if time.monotonic() - t0 > self.timeout:
                    rec["timeout"] = True
                    break
                time.sleep(self.poll)
        except Exception as ex:  # noqa: BLE001 -- reported, not fatal
            rec["error"] = str(ex)[:300]
        finally:
            with self.lock:
                self.pending.discard(name)
                self.results.append(rec)


# ---------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=500, help="mirrors (default 500)")
    ap.add_argument("--jobs", type=int, default=16, help="kalandra watch --jobs (default 16)")
    ap.add_argument("--duration", type=float, default=600, help="seconds of watch, from the spawn (default 600)")
    ap.add_argument("--interval", default="60s", help="[defaults] interval (default 60s)")
    ap.add_argument("--hook-every", type=float, default=2.0, help="seconds between pushes+webhooks (default 2)")
    ap.add_argument("--poll-ms", type=float, default=25, help="downstream poll period (default 25 ms)")
    ap.add_argument("--hook-timeout", type=float, default=180, help="give up on one webhook's latency after (s)")
    ap.add_argument("--final-wait", type=float, default=180,
                    help="at the end, wait up to this for every downstream to equal its upstream (default 180 s)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kalandra", help="the kalandra binary (default target/release/kalandra, built if missing)")
    ap.add_argument("--kalandra-arg", action="append", default=[], metavar="ARG",
                    help="extra argument for kalandra watch (repeatable), e.g. --kalandra-arg=--per-host=16")
    ap.add_argument("--fcgi-children", type=int, default=0, help="fcgiwrap children (default 4 × jobs)")
    ap.add_argument("--svg", default=str(ROOT / "docs" / "img" / "watch-soak.svg"), help="the plot's path")
    ap.add_argument("--json", metavar="FILE", help="also write the JSON report here ('-': stdout)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()

    binary = fleet.ensure_kalandra(a.kalandra)
    if not binary:
        sys.exit("kalandra binary not found")
    cache = fleet.generate(a.count, a.seed)
    WORK_DIR.mkdir(exist_ok=True)
    tmp = WORK_DIR / f"watch-tmp-{os.getpid()}-{int(time.time())}"
    tmp.mkdir()
    fl = fleet.Fleet(cache, a.count, tmp, fsck=False)
    fl.reset_down()
    servers = fleet.Servers(fl.srv, a.fcgi_children or 4 * a.jobs)
    secret = os.urandom(16).hex()
    config = tmp / "watch.toml"
    names_toml = ", ".join(f'"{n}"' for n in fl.names)
    config.write_text(
        "# written by bench/watch_soak.py\n"
        "[defaults]\n"
        f'interval = "{a.interval}"\n'
        f'webhook_secret_env = "{SECRET_ENV}"\n\n'
        "[[template]]\n"
        f"names = [{names_toml}]\n"
        f'upstream = "{servers.url("up", "{name}")}"\n'
        f'downstream = "{servers.url("down", "{name}")}"\n')
    port = fleet.free_port()
    base = f"http://127.0.0.1:{port}"
    local = tmp / "local"
    for d in ("home", "tmp"):
        (local / d).mkdir(parents=True)
    kenv = env(HOME=str(local / "home"), TMPDIR=str(local / "tmp"), **{SECRET_ENV: secret})
    cmd = [str(binary), "watch", "--config", str(config), "--listen", f"127.0.0.1:{port}",
           "--jobs", str(a.jobs), *a.kalandra_arg]
    report: dict = dict(
        count=a.count, jobs=a.jobs, duration=a.duration, interval=a.interval, hook_every=a.hook_every,
        poll_ms=a.poll_ms, seed=a.seed, kalandra=str(binary), kalandra_args=a.kalandra_arg,
        cmd=" ".join(sys.argv), kalandra_cmd=" ".join(cmd), git=git("--version").strip(),
        nproc=os.cpu_count(), loadavg_start=os.getloadavg(),
        started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    samples: list[dict] = []
    metric_samples: list[dict] = []
    stop = threading.Event()
    proc = None
    log = open(tmp / "kalandra.log", "wb")
    try:
        t_spawn = time.monotonic()
        proc = subprocess.Popen(cmd, env=kenv, cwd=local, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT)

        def sampler() -> None:
            k, t0 = 0, time.monotonic()
            while not stop.is_set():
                t = time.monotonic() - t_spawn
                s = proc_sample(proc.pid)
                if s is None:
                    break
                samples.append(dict(t=round(t, 2), rss=s[0], fds=s[1]))
                if k % 10 == 0:
                    try:
                        _, body = http("GET", f"{base}/metrics", timeout=10)
                        metric_samples.append(dict(t=round(time.monotonic() - t_spawn, 2),
                                                   syncs=syncs_by_result(body.decode())))
                    except OSError:
                        pass
                k += 1
                stop.wait(max(0.0, t0 + k - time.monotonic()))

        while True:
            if proc.poll() is not None:
                sys.exit(f"kalandra watch exited with {proc.returncode} at start; see {tmp}/kalandra.log")
            try:
                if http("GET", f"{base}/readyz", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() - t_spawn > 30:
                sys.exit(f"kalandra watch not ready in 30 s; see {tmp}/kalandra.log")
            time.sleep(0.02)
        report["ready_after_s"] = round(time.monotonic() - t_spawn, 3)
        th = threading.Thread(target=sampler, daemon=True)
        th.start()
        print(f"kalandra watch ready after {report['ready_after_s']} s; running {a.duration:.0f} s "
              f"({tmp})", file=sys.stderr, flush=True)

        hooks = Hooks(fl.srv, base, secret.encode(), a.poll_ms / 1000, a.hook_timeout)
        rng = random.Random(a.seed)
        futures = []
        with cf.ThreadPoolExecutor(64) as ex:
            i = 0
            while True:
                t_next = 1.0 + i * a.hook_every  # the first a second after ready
                t_now = time.monotonic() - t_spawn
                if t_next + report["ready_after_s"] > a.duration:
                    break
                time.sleep(max(0.0, t_next + report["ready_after_s"] - t_now))
                with hooks.lock:
                    free = [n for n in fl.names if n not in hooks.pending]
                    name = rng.choice(free)
                    hooks.pending.add(name)
                futures.append(ex.submit(hooks.fire, name, time.monotonic() - t_spawn))
                i += 1
                if i % 30 == 0:
                    lat = [r["latency_s"] for r in hooks.results if "latency_s" in r]
                    last = samples[-1] if samples else dict(rss=0, fds=0)
                    print(f"  t={time.monotonic() - t_spawn:5.0f} s  hooks {i}  done {len(hooks.results)}  "
                          f"p50 {pct(lat, 50)}  RSS {last['rss'] / 2**20:.1f} MiB  fds {last['fds']}",
                          file=sys.stderr, flush=True)
            time.sleep(max(0.0, a.duration - (time.monotonic() - t_spawn)))  # however few the webhooks
            print("  waiting for the last webhooks' latencies", file=sys.stderr, flush=True)
            cf.wait(futures)
        t_end = time.monotonic() - t_spawn
        _, mbody = http("GET", f"{base}/metrics")
        _, sbody = http("GET", f"{base}/status")
        stop.set()
        th.join()
        metrics_text = mbody.decode()
        by_result = syncs_by_result(metrics_text)
        status = json.loads(sbody)
        (tmp / "metrics.txt").write_text(metrics_text)

        # the final check: every downstream equals its upstream (after a wait)
        t_v = time.monotonic()
        while True:
            ver = fl.verify()
            if ver["ok"] or time.monotonic() - t_v > a.final_wait:
                break
            print(f"  {ver['bad']} downstreams differ; waiting", file=sys.stderr, flush=True)
            time.sleep(5)
        ver["waited_s"] = round(time.monotonic() - t_v, 1)
        _, mbody2 = http("GET", f"{base}/metrics")
        report["syncs_by_result_after_final_wait"] = syncs_by_result(mbody2.decode())

        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(120)
        except subprocess.TimeoutExpired:
            rc = None
        report["sigterm"] = dict(exit_code=rc, seconds=round(time.monotonic() - t_term, 3))
    finally:
        stop.set()
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        servers.stop()
    logtext = (tmp / "kalandra.log").read_text(errors="replace")
    report["log_lines"] = len(logtext.splitlines())
    report["log_warnings"] = [l for l in logtext.splitlines() if " WARN " in l or " ERROR " in l][:20]
    if not a.keep:
        shutil.rmtree(tmp, ignore_errors=True)

    # ---- the numbers
    rss = [s["rss"] / 2**20 for s in samples]
    fds = [s["fds"] for s in samples]
    first = [s for s in samples if s["t"] <= 60 + report["ready_after_s"]]
    lastm = [s for s in samples if s["t"] >= t_end - 60]
    total = sum(by_result.values())
    failed = {k: v for k, v in by_result.items() if k != "ok"}
    lat = [r["latency_s"] for r in hooks.results if "latency_s" in r]
    # the steady rate: the syncs of the last 5 minutes (after the catch-up), from the 10 s metric samples
    steady = None
    tail = [m for m in metric_samples if m["t"] >= t_end - 300]
    if len(tail) >= 2:
        d = sum(tail[-1]["syncs"].values()) - sum(tail[0]["syncs"].values())
        steady = dict(syncs=d, seconds=round(tail[-1]["t"] - tail[0]["t"], 1),
                      per_s=d / (tail[-1]["t"] - tail[0]["t"]))
    report.update(
        t_end=round(t_end, 2), loadavg_end=os.getloadavg(),
        rss_mib=stats(rss), fds=stats(fds),
        rss_mib_first_minute_mean=statistics.mean(s["rss"] for s in first) / 2**20 if first else None,
        rss_mib_last_minute_mean=statistics.mean(s["rss"] for s in lastm) / 2**20 if lastm else None,
        fds_first_minute_mean=statistics.mean(s["fds"] for s in first) if first else None,
        fds_last_minute_mean=statistics.mean(s["fds"] for s in lastm) if lastm else None,
        syncs_by_result=by_result, syncs_total=total, syncs_per_s=total / t_end, syncs_failed=failed,
        steady_syncs=steady,
        hooks=dict(sent=len(hooks.results), statuses=sorted({r.get("status") for r in hooks.results}, key=str),
                   non_202=sum(r.get("status") != 202 for r in hooks.results),
                   timeouts=sum(bool(r.get("timeout")) for r in hooks.results),
                   errors=[r["error"] for r in hooks.results if "error" in r][:5],
                   latency_s=dict(p50=pct(lat, 50), p90=pct(lat, 90), p99=pct(lat, 99),
                                  max=max(lat, default=None), min=min(lat, default=None), n=len(lat))),
        status=dict(ready=status.get("ready"), running=status.get("running"),
                    mirrors=len(status.get("mirrors", [])),
                    last_null=sum(m.get("last") is None for m in status.get("mirrors", [])),
                    running_mirrors=sum(bool(m.get("running")) for m in status.get("mirrors", []))),
        verify=ver, samples=samples, metric_samples=metric_samples, hook_results=hooks.results)

    title = (f"kalandra watch: {a.count} mirrors, --jobs {a.jobs}, interval {a.interval}, "
             f"a webhook every {a.hook_every:g} s ({report['started'][:10]})")
    svg_plot(samples, Path(a.svg), title)

    h = report["hooks"]
    L = h["latency_s"]
    f = lambda v, u="": "—" if v is None else f"{v:.2f}{u}"  # noqa: E731
    print(f"\n{a.count} mirrors over HTTP, --jobs {a.jobs}, interval {a.interval}, {t_end:.0f} s; "
          f"{report['git']}; load average {report['loadavg_start'][0]:.2f} -> {report['loadavg_end'][0]:.2f}")
    print(f"kalandra: {report['kalandra_cmd']}")
    print("| what | value |\n|---|---|")
    for k, v in (
        ("ready after", f"{report['ready_after_s']:.2f} s"),
        ("RSS min / median / max", f"{f(report['rss_mib']['min'])} / {f(report['rss_mib']['median'])} / "
                                   f"{f(report['rss_mib']['max'])} MiB"),
        ("RSS mean, first minute / last minute", f"{f(report['rss_mib_first_minute_mean'])} / "
                                                 f"{f(report['rss_mib_last_minute_mean'])} MiB"),
        ("open fds min / median / max", f"{report['fds']['min']} / {report['fds']['median']} / {report['fds']['max']}"),
        ("open fds mean, first minute / last minute", f"{f(report['fds_first_minute_mean'])} / "
                                                      f"{f(report['fds_last_minute_mean'])}"),
        ("syncs (kalandra_syncs_total)", f"{total} in {t_end:.0f} s = {total / t_end:.2f}/s"),
        ("syncs, last 5 minutes", f"{steady['syncs']} in {steady['seconds']} s = {steady['per_s']:.2f}/s"
         if steady else "—"),
        ("failed syncs (result != ok)", json.dumps(failed) if failed else "0"),
        ("webhooks sent / answered 202", f"{h['sent']} / {h['sent'] - h['non_202']}"),
        ("webhook → downstream p50 / p90 / p99 / max", f"{f(L['p50'], ' s')} / {f(L['p90'], ' s')} / "
                                                      f"{f(L['p99'], ' s')} / {f(L['max'], ' s')} (n={L['n']}, "
                                                      f"timeouts {h['timeouts']})"),
        ("every downstream = upstream at the end", "yes" if ver["ok"] else
         f"NO: {ver['bad']} differ after {ver['waited_s']} s: {ver['first']}"),
        ("SIGTERM → exit", f"{report['sigterm']['seconds']:.2f} s, exit code {report['sigterm']['exit_code']}"),
        ("/status at the end", f"{report['status']}"),
        ("log warnings/errors (first)", f"{len(report['log_warnings'])}"),
    ):
        print(f"| {k} | {v} |")
    for w in report["log_warnings"][:5]:
        print("   ", w[:300])
    print(f"plot: {a.svg}")
    run.save_report(report, f"watch-soak-c{a.count}-j{a.jobs}", a.json)


if __name__ == "__main__":
    main()
