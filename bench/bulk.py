#!/usr/bin/env python3
"""Memory-bound check on a ~1 GB pack of incompressible blobs.

Not realistic history (see gen_repo.py for that); it only shows that
kalandra's own peak RSS does not grow with the pack. Generates (and caches)
bench/work/repos/bulk-<mib>/upstream.git from a fixed seed, mirrors it into
an empty bare repository with `kalandra sync`, and prints wall time,
kalandra's peak RSS (VmHWM, polled) and the bytes its own threads wrote.

    python3 bench/bulk.py [--mib 1024] [--kalandra target/release/kalandra]
"""
import argparse, os, random, shutil, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENV = dict(os.environ, TZ="UTC", LANG="C", LC_ALL="C", GIT_CONFIG_NOSYSTEM="1",
           GIT_AUTHOR_NAME="Bench", GIT_AUTHOR_EMAIL="bench@kalandra.invalid",
           GIT_COMMITTER_NAME="Bench", GIT_COMMITTER_EMAIL="bench@kalandra.invalid")


def generate(repo: Path, mib: int, seed: int) -> None:
    if (repo / "DONE").exists():
        return
    if repo.exists():
        shutil.rmtree(repo)
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True, env=ENV)
    rng = random.Random(seed)
    fi = subprocess.Popen(["git", "-C", str(repo), "fast-import", "--quiet"], stdin=subprocess.PIPE, env=ENV)
    out = fi.stdin
    blob_mib, per_commit = 4, 8
    blobs = mib // blob_mib
    mark, date, parent = 0, 1_600_000_000, None
    for c in range(0, blobs, per_commit):
        files = []
        for i in range(c, min(c + per_commit, blobs)):
            mark += 1
            data = rng.randbytes(blob_mib << 20)
            out.write(b"blob\nmark :%d\ndata %d\n" % (mark, len(data)))
            out.write(data)
            out.write(b"\n")
            files.append((i, mark))
        mark += 1
        msg = b"bulk %d" % c
        out.write(b"commit refs/heads/main\nmark :%d\n" % mark)
        out.write(b"committer Bench <bench@kalandra.invalid> %d +0000\n" % (date + c))
        out.write(b"data %d\n%s\n" % (len(msg), msg))
        if parent:
            out.write(b"from :%d\n" % parent)
        for i, m in files:
            out.write(b"M 100644 :%d data/%05d.bin\n" % (m, i))
        parent = mark
    out.close()
    if fi.wait() != 0:
        sys.exit("fast-import failed")
    subprocess.run(["git", "-C", str(repo), "repack", "-adq"], check=True, env=ENV)
    (repo / "DONE").write_text("ok\n")


def thread_write_bytes(pid: int) -> int:
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            for line in open(f"/proc/{pid}/task/{tid}/io"):
                if line.startswith("write_bytes:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kalandra", default=str(HERE.parent / "target/release/kalandra"))
    a = ap.parse_args()
    repo = HERE / "work" / "repos" / f"bulk-{a.mib}" / "upstream.git"
    repo.parent.mkdir(parents=True, exist_ok=True)
    t = time.monotonic()
    generate(repo, a.mib, a.seed)
    print(f"repository ready in {time.monotonic() - t:.0f} s: {repo}", file=sys.stderr)
    pack = sum(p.stat().st_size for p in (repo / "objects" / "pack").glob("*.pack"))
    with tempfile.TemporaryDirectory(dir=HERE / "work") as tmp:
        down = Path(tmp) / "down.git"
        subprocess.run(["git", "init", "-q", "--bare", str(down)], check=True, env=ENV)
        start = time.monotonic()
        proc = subprocess.Popen([a.kalandra, "sync", "-q", str(repo), str(down)], env=ENV)
        hwm, writes = 0, 0
        while proc.poll() is None:
            try:
                for line in open(f"/proc/{proc.pid}/status"):
                    if line.startswith("VmHWM:"):
                        hwm = max(hwm, int(line.split()[1]) * 1024)
                writes = max(writes, thread_write_bytes(proc.pid))
            except OSError:
                pass
            time.sleep(0.02)
        wall = time.monotonic() - start
        if proc.returncode != 0:
            sys.exit(f"kalandra exited {proc.returncode}")
        up = subprocess.run(["git", "-C", str(repo), "for-each-ref"], capture_output=True, env=ENV).stdout
        dn = subprocess.run(["git", "-C", str(down), "for-each-ref"], capture_output=True, env=ENV).stdout
        fsck = subprocess.run(["git", "-C", str(down), "fsck", "--connectivity-only"], capture_output=True, env=ENV)
        print(f"pack {pack / 2**20:.0f} MiB | kalandra wall {wall:.1f} s | peak RSS {hwm / 2**20:.1f} MiB"
              f" | own disk writes {writes} B | refs equal {up == dn} | fsck ok {fsck.returncode == 0}")


if __name__ == "__main__":
    main()
