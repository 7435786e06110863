#!/usr/bin/env python3
"""Split pushes (issue 14): an initial mirror under a per-push cap, against one
uncapped push, in the same run (Python 3.11, standard library only).

For each of `--repeat` rounds, on the generated repository (`bench/gen_repo.py`,
cached in bench/work/repos/), it mirrors upstream's bare repository into a
fresh empty bare downstream, over file:// (local paths, as bench/run.py):

* uncapped: `kalandra sync -v --json UP DOWN` (one push);
* capped:   downstream configured with `receive.maxInputSize CAP` (git refuses
  any push whose pack is larger, so the cap is enforced by downstream, not
  taken on trust), then `kalandra sync -v --json --max-pack-bytes CAP UP DOWN`;
* naive (for context, `--no-naive` to skip): `git clone --mirror` +
  `git push --mirror` into an uncapped downstream (bench/run.py's leg).

Each leg is measured as bench/run.py measures (its `measure`): wall time,
CPU (kalandra alone, and kalandra plus the git upload-pack / receive-pack /
index-pack children it spawns over file://, from wait4), kalandra's own peak
RSS (VmHWM) and the process tree's. From kalandra's `--json` report: bytes
relayed (every push, cut tries included), the landed pack, and the `steps`
(pushes by kind, cut tries). Every sync is verified afterwards, outside the
timing: downstream's branches and tags equal upstream's, `git fsck
--connectivity-only` passes, no ref under refs/kalandra/ is left, and no
landed push carried more than the cap.

Ratios capped / uncapped (wall, CPU, bytes relayed) are printed per round and
for the medians; the JSON report goes to bench/work/results/ (as run.py's).
This is a benchmark, not a test: it asserts nothing about timings (it exits
non-zero only if a sync failed or a verification did not hold).

    python3 bench/batched.py --size small --cap 16m --repeat 1     # smoke test
    python3 bench/batched.py --size large --cap 256m --repeat 1    # issue 14's benchmark
    python3 bench/batched.py --size tiny --cap 1m --no-naive --kalandra target/release/kalandra
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_repo  # noqa: E402
import run as bench  # noqa: E402  (bench/run.py: measure, verify, naive leg, report helpers)

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
WORK_DIR = BENCH_DIR / "work"
CHECKPOINTS = "refs/kalandra/"


def parse_size(text: str) -> int:
    """As git and kalandra read `256m`: k, m, g are powers of 1024."""
    m = re.fullmatch(r"(\d+)\s*([kmg]?)(?:i?b)?", text.strip().lower())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 256m)")
    return int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30}[m.group(2)]


def build_kalandra(path: str | None, build: bool) -> Path:
    """The release binary: --kalandra PATH as given, else `cargo build --release`
    (incremental; honours CARGO_TARGET_DIR) and $CARGO_TARGET_DIR/release/kalandra."""
    if path:
        p = Path(path).resolve()
        if not p.exists():
            raise SystemExit(f"{p}: no such binary")
        return p
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    if not target.is_absolute():
        target = ROOT / target
    if build:
        print(f"building kalandra: cargo build --release (CARGO_TARGET_DIR={target})", file=sys.stderr, flush=True)
        r = subprocess.run(["cargo", "build", "--release", "--bin", "kalandra"], cwd=ROOT,
                           env=dict(os.environ, CARGO_TARGET_DIR=str(target)))
        if r.returncode != 0:
            raise SystemExit("cargo build --release failed")
    p = target / "release" / "kalandra"
    if not p.exists():
        raise SystemExit(f"{p}: not built (drop --no-build)")
    return p


def leftover_refs(down: Path) -> list[str]:
    return bench.git("-C", str(down), "for-each-ref", "--format=%(refname)", CHECKPOINTS).split()


def packs_in(down: Path) -> tuple[int, int]:
    """How many packs downstream holds now, and their bytes."""
    packs = list((down / "objects" / "pack").glob("*.pack"))
    return len(packs), sum(p.stat().st_size for p in packs)


def run_sync(s: bench.Setup, binary: Path, cap: int | None, cap_text: str | None,
             log: Path | None = None) -> dict:
    """One initial mirror into a fresh empty bare downstream; measured, then verified.
    kalandra's stderr is also appended to `log` as it comes."""
    down = bench.init_bare(s.fresh("down-capped.git" if cap else "down-uncapped.git"))
    cmd = [str(binary), "sync", "-v", "--json"]
    if cap:
        # downstream refuses any push whose pack passes the cap: the proof it held
        bench.git("-C", str(down), "config", "receive.maxInputSize", str(cap))
        cmd += ["--max-pack-bytes", cap_text or str(cap)]
    cmd += [bench.url(s.up), bench.url(down)]
    print(f"   {' '.join(cmd)}" + (f"  (log: {log})" if log else ""), file=sys.stderr, flush=True)
    m = bench.measure(cmd, stderr_tail=200_000, stderr_file=log)
    res: dict = dict(
        cmd=cmd, rc=m["rc"], wall=m["wall"], cpu=m["cpu"], own_cpu=m["own_cpu"],
        own_peak_rss=m["own_peak_rss"], tree_peak_rss=m["tree_peak_rss"],
        max_single_rss=m["max_single_rss"], own_write_bytes=m["own_write_bytes"], samples=m["samples"],
        log=[l for l in m["stderr"].splitlines() if l.strip()][-400:],
    )
    if m["rc"] != 0:
        res["error"] = m["stderr"][-3000:]
    else:
        try:
            j = json.loads(m["stdout"])
        except json.JSONDecodeError as e:
            j = None
            res["json_error"] = f"{e}: {m['stdout'][:300]!r}"
        if j is not None:
            steps = j.get("steps") or []
            pk = j.get("pack") or {}
            res.update(
                outcome=j.get("outcome"), bytes_relayed=j.get("bytes_relayed"),
                pack_objects=pk.get("objects"), pack_bytes=pk.get("bytes"),
                refs_reported=len(j.get("refs") or []), elapsed_ms=j.get("elapsed_ms"),
                steps=steps,
                # a sync that took one push lists no steps
                pushes=len(steps) or 1,
                pack_pushes=sum(1 for x in steps if x["kind"] != "cleanup" and not x["cut"]) or 1,
                checkpoint_pushes=sum(1 for x in steps if x["kind"] == "checkpoint" and not x["cut"]),
                cut_tries=sum(1 for x in steps if x["cut"]),
                cut_bytes=sum(x["bytes"] for x in steps if x["cut"]),
                landed_bytes=sum(x["bytes"] for x in steps if not x["cut"]) if steps else j.get("bytes_relayed"),
                largest_landed_push=max((x["bytes"] for x in steps if not x["cut"]),
                                        default=j.get("bytes_relayed")),
            )
    v = bench.verify(s.up, down, fsck=True)
    v["leftover_refs"] = leftover_refs(down)
    if cap and "largest_landed_push" in res:
        v["cap_held"] = res["largest_landed_push"] <= cap
    res["verify"] = v
    res["verified"] = bool(v["refs_equal"] and v.get("fsck_ok") and not v["leftover_refs"]
                           and v.get("cap_held", True) and res["rc"] == 0)
    res["down_packs"], res["down_pack_bytes"] = packs_in(down)
    shutil.rmtree(down)
    return res


def run_naive(s: bench.Setup) -> dict:
    r = bench.run_naive(s, "initial")
    r["verified"] = bool(r["verify"]["refs_equal"] and not r["rc"])
    return r


NUMERIC = ("wall", "cpu", "own_cpu", "own_peak_rss", "tree_peak_rss", "max_single_rss", "bytes_relayed",
           "pack_bytes", "pack_objects", "pushes", "pack_pushes", "checkpoint_pushes", "cut_tries",
           "cut_bytes", "landed_bytes", "largest_landed_push", "down_packs", "down_pack_bytes",
           "fetch_wall", "push_wall", "mirror_du_bytes")


def median(runs: list[dict]) -> dict:
    out: dict = {}
    for k in NUMERIC:
        vals = [r.get(k) for r in runs]
        if vals and all(isinstance(v, (int, float)) for v in vals):
            out[k] = statistics.median(vals)
    out["verified"] = all(r.get("verified") for r in runs)
    return out


def ratio(a, b) -> float | None:
    return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


def ratios(capped: dict, uncapped: dict) -> dict:
    return {k: ratio(capped.get(k), uncapped.get(k)) for k in ("wall", "cpu", "own_cpu", "bytes_relayed")}


def fmt_r(v) -> str:
    return "—" if v is None else f"{v:.2f}×"


def fmt_cpu(r: dict) -> str:
    own = r.get("own_cpu")
    return f"{r['cpu']:.1f} s ({own:.1f} s own)" if own is not None else f"{r['cpu']:.1f} s"


def table(med: dict, cap: int, naive: dict | None) -> str:
    u, c = med["uncapped"], med["capped"]
    hdr = ("leg", "wall", "CPU (tree; kalandra own)", "kalandra peak RSS", "tree peak RSS", "bytes relayed",
           "pushes (packs + cut tries + cleanup)", "largest push", "verified")
    rows = ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]

    def pushes(r: dict) -> str:
        if r.get("pushes") is None:
            return "—"
        if r["pushes"] == 1 and not r.get("cut_tries"):
            return "1"
        clean = r["pushes"] - r["pack_pushes"] - r["cut_tries"]
        return f"{r['pushes']:.0f} ({r['pack_pushes']:.0f} + {r['cut_tries']:.0f} + {clean:.0f})"

    for name, r in (("uncapped", u), (f"capped {bench.fmt_b(cap)}", c)):
        rows.append("| " + " | ".join((
            name, bench.fmt_s(r.get("wall")), fmt_cpu(r) if r.get("cpu") is not None else "—",
            bench.fmt_b(r.get("own_peak_rss")), bench.fmt_b(r.get("tree_peak_rss")),
            bench.fmt_b(r.get("bytes_relayed")), pushes(r), bench.fmt_b(r.get("largest_landed_push")),
            "yes" if r.get("verified") else "NO")) + " |")
    rt = ratios(c, u)
    rows.append("| " + " | ".join((
        "capped / uncapped", fmt_r(rt["wall"]), f"{fmt_r(rt['cpu'])} ({fmt_r(rt['own_cpu'])} own)", "", "",
        fmt_r(rt["bytes_relayed"]), "", "", "")) + " |")
    if naive:
        rows.append("| " + " | ".join((
            "naive clone --mirror + push --mirror", bench.fmt_s(naive.get("wall")), "—", "—",
            bench.fmt_b(naive.get("tree_peak_rss")), "—", "1", "—",
            "yes" if naive.get("verified") else "NO")) + " |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(gen_repo.SIZES), default="large")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cap", default="256m",
                    help="the per-push cap: --max-pack-bytes and downstream's receive.maxInputSize (default 256m)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds; medians are reported")
    ap.add_argument("--kalandra", help="path to the kalandra binary (default: cargo build --release, "
                                       "then $CARGO_TARGET_DIR/release/kalandra)")
    ap.add_argument("--no-build", action="store_true", help="use the built binary as it is")
    ap.add_argument("--no-naive", action="store_true", help="skip the naive clone --mirror + push --mirror leg")
    ap.add_argument("--gen-threads", type=int, default=0, help="pack.threads when generating the repository")
    ap.add_argument("--json", metavar="FILE", help="also write the JSON report here ('-' for stdout)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = ap.parse_args()
    cap = parse_size(a.cap)

    t0 = time.monotonic()
    repo_dir = gen_repo.generate(a.size, a.seed, a.gen_threads)
    gen_s = time.monotonic() - t0
    binary = build_kalandra(a.kalandra, build=not a.no_build)

    WORK_DIR.mkdir(exist_ok=True)
    tmp = WORK_DIR / f"tmp-batched-{os.getpid()}-{int(time.time())}"
    tmp.mkdir()
    s = bench.Setup(repo_dir, tmp)
    gv = bench.git("--version").strip()
    kv = subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    report: dict = dict(
        benchmark="batched", size=a.size, seed=a.seed, repo=s.meta, cap=cap, cap_text=a.cap, git=gv,
        kalandra=str(binary), kalandra_version=kv, source_commit=commit, transport="file",
        repeat=a.repeat, nproc=os.cpu_count(), loadavg_start=os.getloadavg(),
        started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), generate_seconds=round(gen_s, 1),
        rounds=[],
    )
    print(f"repository: {a.size} seed {a.seed}: {s.meta['objects']} objects, "
          f"{bench.fmt_b(s.meta['pack_bytes'])} pack, {s.meta['commits']} commits, {s.meta['refs']} refs; "
          f"cap {bench.fmt_b(cap)}; {gv}; {kv}", file=sys.stderr, flush=True)
    runs: dict[str, list[dict]] = dict(uncapped=[], capped=[], naive=[])
    # rewritten after every leg, so that an interrupted run still leaves what it measured
    partial = WORK_DIR / "results" / f"batched-{a.size}-s{a.seed}-cap{a.cap}-partial-{os.getpid()}.json"
    partial.parent.mkdir(parents=True, exist_ok=True)

    def checkpoint(rnd: dict) -> None:
        partial.write_text(json.dumps(dict(report, rounds=report["rounds"] + [rnd]), indent=2, default=str) + "\n")
    try:
        for i in range(a.repeat):
            rnd: dict = {}
            # interleaved, so that load from elsewhere spreads over every leg
            for leg in ("uncapped", "capped"):
                r = run_sync(s, binary, cap if leg == "capped" else None, a.cap,
                             log=partial.with_name(f"batched-{a.size}-s{a.seed}-cap{a.cap}-{os.getpid()}-{i + 1}-{leg}.log"))
                runs[leg].append(r)
                rnd[leg] = r
                extra = (f" pushes={r.get('pushes')} cut={r.get('cut_tries')}" if leg == "capped" else "")
                print(f"   [{i + 1}/{a.repeat}] {leg}: rc={r['rc']} {bench.fmt_s(r['wall'])}"
                      f" cpu {r['cpu']:.1f} s relayed {bench.fmt_b(r.get('bytes_relayed'))}{extra}"
                      f" verified={r['verified']}", file=sys.stderr, flush=True)
                if r["rc"]:
                    print(r.get("error", ""), file=sys.stderr)
                checkpoint(rnd)
            if not a.no_naive:
                r = run_naive(s)
                runs["naive"].append(r)
                rnd["naive"] = r
                print(f"   [{i + 1}/{a.repeat}] naive: {bench.fmt_s(r['wall'])} verified={r['verified']}",
                      file=sys.stderr, flush=True)
            rnd["ratios"] = ratios(rnd["capped"], rnd["uncapped"])
            print(f"   [{i + 1}/{a.repeat}] capped/uncapped: wall {fmt_r(rnd['ratios']['wall'])},"
                  f" bytes {fmt_r(rnd['ratios']['bytes_relayed'])}", file=sys.stderr, flush=True)
            report["rounds"].append(rnd)
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    report["loadavg_end"] = os.getloadavg()
    med = {leg: median(rs) for leg, rs in runs.items() if rs}
    report["median"] = med
    report["ratios"] = ratios(med["capped"], med["uncapped"])
    report["verified"] = all(m["verified"] for m in med.values())

    print(f"\nrepository: {a.size} seed {a.seed}: {s.meta['objects']} objects, "
          f"{bench.fmt_b(s.meta['pack_bytes'])} pack, {s.meta['commits']} commits, {s.meta['refs']} refs; "
          f"cap {bench.fmt_b(cap)} (--max-pack-bytes {a.cap}, receive.maxInputSize {cap}); "
          f"{gv}; repeat {a.repeat} (medians); load {report['loadavg_start'][0]:.1f}→{report['loadavg_end'][0]:.1f}")
    print(table(med, cap, med.get("naive")))
    c = med["capped"]
    if c.get("cut_tries") is not None:
        print(f"capped: {c['pack_pushes']:.0f} pushes landed ({c['checkpoint_pushes']:.0f} checkpoints), "
              f"{c['cut_tries']:.0f} cut tries wasting {bench.fmt_b(c['cut_bytes'])}, "
              f"{bench.fmt_b(c['landed_bytes'])} landed in {c['down_packs']:.0f} packs; "
              f"largest landed push {bench.fmt_b(c['largest_landed_push'])} (cap {bench.fmt_b(cap)})")
    bench.save_report(report, f"batched-{a.size}-s{a.seed}-cap{a.cap}", a.json)
    partial.unlink(missing_ok=True)
    if not report["verified"]:
        print("VERIFICATION FAILED (see the JSON report)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
