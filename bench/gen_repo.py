#!/usr/bin/env python3
"""Deterministic generator of a large, realistic git repository for Kalandra's benchmarks.

Python 3.11 standard library + git only.  The history is produced as a
`git fast-import` stream from a seeded PRNG (random.Random(seed)); author and
committer dates are pinned in the stream, so the same parameters always give
the same objects, the same object ids and the same refs.  After the import the
repository is repacked with `git repack -adf` so it looks like a packed server
repository.  With `--threads 1` the repacked pack is also byte-for-byte
identical between runs; with more threads git's delta search is parallel and
the pack bytes (not the objects) may differ slightly.

What the history looks like: an evolving source tree of thousands of files in
a three-level directory layout, a lockfile full of checksums, thousands of
commits each editing a few files (insertions, deletions, in-place rewrites,
moved blocks), files being added, deleted and renamed, feature branches that
are merged back with merge commits, release branches with backports,
annotated and lightweight tags.

Besides the repository, the generator records the state of every ref as it
was N commits before the end ("base" state): the incremental-sync scenario
creates a downstream at that older state and lets the sync catch up.

Usage:
    python3 bench/gen_repo.py --size small            # prints the cache dir
    python3 bench/gen_repo.py --size large --seed 7
The result is cached in bench/work/repos/<size>-s<seed>-g<GENERATOR_VERSION>/
and reused if it is complete (DONE stamp present).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

GENERATOR_VERSION = 1
BENCH_DIR = Path(__file__).resolve().parent
WORK_DIR = BENCH_DIR / "work"

# Size presets.  Pack sizes/object counts are what the presets produced when
# they were tuned (see docs/benchmarks.md); they are not guaranteed targets.
SIZES: dict[str, dict[str, int]] = {
    # seconds; for smoke-testing the harness only
    "tiny": dict(dirs=6, subdirs=4, files=300, commits=600, incr=60),
    # ~100 MB pack, >100k objects
    "small": dict(dirs=20, subdirs=10, files=5000, commits=22000, incr=200),
    # ~1 GB pack
    # (smaller files, more churn per commit than "small": keeps the generation time
    # within ~15 minutes on 2 cores)
    "large": dict(dirs=60, subdirs=20, files=60000, commits=200000, incr=300,
                  mu=460, max_lines=700, ins=16, dele=13),
    # ~3 GB pack (documented, not routinely generated)
    "huge": dict(dirs=80, subdirs=25, files=120000, commits=450000, incr=300,
                 mu=460, max_lines=700, ins=16, dele=13),
}

EPOCH0 = 1_500_000_000  # 2017-07-14, first commit date (UTC)


def git_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        TZ="UTC",
        LANG="C",
        LC_ALL="C",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL="/dev/null",
        GIT_AUTHOR_NAME="bench",
        GIT_AUTHOR_EMAIL="bench@example.invalid",
        GIT_COMMITTER_NAME="bench",
        GIT_COMMITTER_EMAIL="bench@example.invalid",
        GIT_AUTHOR_DATE="@1700000000 +0000",
        GIT_COMMITTER_DATE="@1700000000 +0000",
    )
    return env


# ---------------------------------------------------------------------------
# Text generation


class Text:
    """Source-like text from a seeded PRNG."""

    SYL = (
        "ba be bi bo bu ca ce ci co cu da de di do du fa fe fi fo fu ga ge gi go gu "
        "ha he hi ho hu ja je ji jo ju ka ke ki ko ku la le li lo lu ma me mi mo mu "
        "na ne ni no nu pa pe pi po pu ra re ri ro ru sa se si so su ta te ti to tu "
        "va ve vi vo vu wa we wi wo xa xe xi za ze zi zo zu str tr pl gr fl sh ch th "
        "an en in on un ar er ir or ur al el il ol ul ex ix ox ing ed er ly"
    ).split()
    WORDS = (
        "the a of to in is for on that with as by this be are from at it an or was "
        "not if when buffer stream packet reference object pack index delta tree commit "
        "upstream downstream mirror sync read write flush error retry timeout handle "
        "request response server client cache queue worker thread task future state "
        "value count offset length size limit header trailer checksum hash verify parse "
        "encode decode frame chunk batch table entry node edge graph walk visit update "
        "remove insert lookup resolve config option default path file dir name type"
    ).split()
    TYPES = "u8 u16 u32 u64 usize i32 i64 bool String Vec<u8> Option<u32> &str Bytes Result<()>".split()

    def __init__(self, rng: random.Random, vocab: int) -> None:
        self.rng = rng
        syl = self.SYL
        r = rng
        seen: set[str] = set()
        ids: list[str] = []
        while len(ids) < vocab:
            n = r.choice((2, 2, 3, 3, 3, 4))
            w = "".join(r.choice(syl) for _ in range(n))
            if r.random() < 0.35:
                w += "_" + "".join(r.choice(syl) for _ in range(r.choice((1, 2))))
            if w not in seen:
                seen.add(w)
                ids.append(w)
        self.ids = ids
        self.camel = ["".join(p.capitalize() for p in w.split("_")) for w in ids[: vocab // 4]]

    def ident(self) -> str:
        # skewed: low indices are much more frequent, like real code
        ids = self.ids
        return ids[int(len(ids) * self.rng.random() ** 2.5)]

    def tname(self) -> str:
        c = self.camel
        return c[int(len(c) * self.rng.random() ** 2)]

    def words(self, lo: int, hi: int) -> str:
        r = self.rng
        w = self.WORDS
        return " ".join(w[int(len(w) * r.random() ** 1.5)] if r.random() < 0.7 else self.ident()
                        for _ in range(r.randint(lo, hi)))

    def line(self, indent: int) -> str:
        r = self.rng
        ind = "    " * indent
        k = r.random()
        i = self.ident
        if k < 0.22:
            return f"{ind}let {i()} = {i()}.{i()}({i()}, {r.randint(0, 4096)});"
        if k < 0.34:
            return f"{ind}if {i()}.{i()}() > {r.randint(0, 1 << 16)} && !{i()} {{"
        if k < 0.44:
            return f"{ind}}}"
        if k < 0.54:
            return f"{ind}// {self.words(3, 12)}"
        if k < 0.62:
            return f"{ind}return Err({self.tname()}::{self.tname()}(\"{self.words(2, 7)}\"));"
        if k < 0.70:
            return f"{ind}{i()}.{i()}(&mut {i()}, {self.tname()}::new({i()}))?;"
        if k < 0.77:
            return f"{ind}const {i().upper()}: {r.choice(self.TYPES)} = 0x{r.getrandbits(32):08x};"
        if k < 0.84:
            return f"{ind}for {i()} in {i()}.iter().skip({r.randint(0, 64)}) {{"
        if k < 0.90:
            return f"{ind}match {i()} {{ {self.tname()}::{self.tname()} => {i()}, _ => {r.randint(0, 999)} }}"
        if k < 0.95:
            return ""
        return f"{ind}assert_eq!({i()}({r.randint(0, 99)}), {r.getrandbits(24)}, \"{self.words(2, 6)}\");"

    def block(self, n: int) -> list[str]:
        r = self.rng
        out: list[str] = []
        out.append(f"pub fn {self.ident()}({self.ident()}: {r.choice(self.TYPES)}, {self.ident()}: &{self.tname()}) -> Result<{self.tname()}> {{")
        depth = 1
        for _ in range(max(0, n - 2)):
            out.append(self.line(depth))
            if out[-1].endswith("{"):
                depth = min(depth + 1, 5)
            elif out[-1].strip() == "}" and depth > 1:
                depth -= 1
        out.append("}")
        return out

    def file(self, nlines: int, path: str) -> list[str]:
        out = [f"//! {path}: {self.words(4, 10)}", "", f"use crate::{self.ident()}::{{{self.tname()}, {self.tname()}}};", ""]
        while len(out) < nlines:
            out.extend(self.block(self.rng.randint(6, 40)))
            out.append("")
        return out


# ---------------------------------------------------------------------------
# History generation


class Gen:
    def __init__(self, p: dict[str, int], seed: int, out) -> None:
        self.p = p
        self.rng = random.Random(seed)
        self.text = Text(self.rng, vocab=max(2000, p["files"] * 3))
        self.out = out
        self.mark = 0
        self.time = EPOCH0
        self.ncommits = 0
        # branch name -> (tip mark, {path: (blob mark, lines tuple)})
        self.branches: dict[str, tuple[int | None, dict[str, tuple[int, tuple[str, ...]]]]] = {}
        self.tags: list[str] = []
        self.authors = [f"{self.text.tname()} {self.text.tname()}" for _ in range(40)]
        self.base_snapshot: dict[str, int] | None = None
        self.base_tags: list[str] | None = None
        self.bytes_out = 0
        self.fork_base: dict[str, dict] = {}
        # file-size and churn knobs (defaults are the "small" preset's)
        self.max_lines = p.get("max_lines", 1400)
        self.ins = p.get("ins", 11)
        self.dele = p.get("dele", 9)

    # -- stream helpers
    def w(self, s: str) -> None:
        b = s.encode()
        self.bytes_out += len(b)
        self.out.write(b)

    def data(self, s: str) -> None:
        b = s.encode()
        self.bytes_out += len(b) + 16
        self.out.write(b"data %d\n" % len(b))
        self.out.write(b)
        self.out.write(b"\n")

    def new_mark(self) -> int:
        self.mark += 1
        return self.mark

    def blob(self, lines: tuple[str, ...]) -> int:
        m = self.new_mark()
        self.w(f"blob\nmark :{m}\n")
        self.data("\n".join(lines) + "\n")
        return m

    def tick(self) -> int:
        self.time += self.rng.randint(30, 9000)
        return self.time

    def ident(self) -> str:
        a = self.rng.choice(self.authors)
        return f"{a} <{a.lower().replace(' ', '.')}@example.invalid> {self.tick()} +0000"

    def message(self) -> str:
        r = self.rng
        subj = self.text.words(3, 9).capitalize()
        if r.random() < 0.5:
            return subj + "\n"
        body = "\n".join(self.text.words(6, 14) for _ in range(r.randint(1, 6)))
        return f"{subj}\n\n{body}\n"

    def commit(self, branch: str, changes: dict[str, tuple[int, tuple[str, ...]] | None],
               merge: int | None = None, parent: int | None | str = "tip") -> int:
        tip, files = self.branches[branch]
        if parent == "tip":
            parent = tip
        m = self.new_mark()
        ident = self.ident()
        self.w(f"commit refs/heads/{branch}\nmark :{m}\nauthor {ident}\ncommitter {ident}\n")
        self.data(self.message())
        if parent is not None:
            self.w(f"from :{parent}\n")
        if merge is not None:
            self.w(f"merge :{merge}\n")
        parts = []
        for path in sorted(changes):
            v = changes[path]
            if v is None:
                parts.append(f"D {path}\n")
                files.pop(path, None)
            else:
                parts.append(f"M 100644 :{v[0]} {path}\n")
                files[path] = v
        self.w("".join(parts) + "\n")
        self.branches[branch] = (m, files)
        self.ncommits += 1
        return m

    # -- edits
    def new_path(self, files: dict) -> str:
        r = self.rng
        p = self.p
        while True:
            d = f"src/{self.text.ids[r.randrange(p['dirs'])]}/{self.text.ids[p['dirs'] + r.randrange(p['subdirs'])]}"
            path = f"{d}/{self.text.ident()}.{r.choice(('rs', 'rs', 'rs', 'c', 'go', 'py'))}"
            if path not in files:
                return path

    def edit_lines(self, lines: tuple[str, ...]) -> tuple[str, ...]:
        r = self.rng
        t = self.text
        ls = list(lines)
        for _ in range(r.choice((1, 1, 1, 2, 2, 3, 4))):
            n = len(ls)
            k = r.random()
            if n > self.max_lines:
                k = 0.5  # too long: delete
            if k < 0.40 or n < 30:  # insert a block of new code
                size = min(600, int(r.paretovariate(1.3) * self.ins))
                pos = r.randint(0, n)
                ls[pos:pos] = t.block(size) if size > 5 else [t.line(1) for _ in range(size)]
            elif k < 0.60:  # delete a range
                a = r.randrange(n)
                ls[a:a + min(n // 3, int(r.paretovariate(1.3) * self.dele))] = []
            elif k < 0.85:  # rewrite a few lines in place
                a = r.randrange(n)
                for j in range(a, min(n, a + r.randint(1, 8))):
                    ls[j] = t.line(1 + (len(ls[j]) - len(ls[j].lstrip())) // 4 % 4)
            else:  # move a block
                a = r.randrange(n)
                blk = ls[a:a + r.randint(3, 60)]
                del ls[a:a + len(blk)]
                pos = r.randint(0, len(ls))
                ls[pos:pos] = blk
        return tuple(ls)

    def random_commit(self, branch: str) -> int:
        r = self.rng
        _, files = self.branches[branch]
        changes: dict[str, tuple[int, tuple[str, ...]] | None] = {}
        paths = None
        nf = min(12, int(r.paretovariate(1.6)))
        for _ in range(nf):
            k = r.random()
            if k < 0.04 or not files:  # new file
                path = self.new_path(files)
                lines = tuple(self.text.file(r.randint(40, 700), path))
            elif k < 0.05 and len(files) > self.p["files"] // 2:  # delete
                if paths is None:
                    paths = sorted(files)
                changes[r.choice(paths)] = None
                continue
            elif k < 0.06:  # rename with a small edit
                if paths is None:
                    paths = sorted(files)
                old = r.choice(paths)
                if old in changes or old == "Cargo.lock":
                    continue
                changes[old] = None
                path = self.new_path(files)
                lines = self.edit_lines(files[old][1]) if r.random() < 0.5 else files[old][1]
                if lines == files[old][1]:
                    changes[path] = files[old]
                    continue
            else:
                if paths is None:
                    paths = sorted(files)
                # skew towards "hot" files
                path = paths[int(len(paths) * r.random() ** 1.7)]
                if path == "Cargo.lock" or files.get(path) is None:
                    continue
                prev = changes.get(path) or files[path]
                lines = self.edit_lines(prev[1])
            changes[path] = (self.blob(lines), lines)
        if r.random() < 0.03 and "Cargo.lock" in files:
            lines = self.bump_lock(files["Cargo.lock"][1])
            changes["Cargo.lock"] = (self.blob(lines), lines)
        if not changes:
            path = self.new_path(files)
            lines = tuple(self.text.file(60, path))
            changes[path] = (self.blob(lines), lines)
        return self.commit(branch, changes)

    def lock_entry(self) -> list[str]:
        r = self.rng
        return [
            "[[package]]",
            f'name = "{self.text.ident().replace("_", "-")}"',
            f'version = "{r.randint(0, 3)}.{r.randint(0, 40)}.{r.randint(0, 30)}"',
            'source = "registry+https://example.invalid/index"',
            f'checksum = "{r.getrandbits(256):064x}"',
            "",
        ]

    def bump_lock(self, lines: tuple[str, ...]) -> tuple[str, ...]:
        r = self.rng
        ls = list(lines)
        for _ in range(r.randint(1, 6)):
            i = r.randrange(0, len(ls) // 6) * 6
            ls[i:i + 6] = self.lock_entry()
        if r.random() < 0.3:
            ls.extend(self.lock_entry())
        return tuple(ls)

    def fork(self, name: str, source: str) -> None:
        tip, files = self.branches[source]
        self.branches[name] = (tip, dict(files))
        self.fork_base[name] = files.copy()
        self.w(f"reset refs/heads/{name}\nfrom :{tip}\n\n")

    # -- the whole history
    def run(self, incr: int) -> None:
        r = self.rng
        p = self.p
        self.w("feature done\n")
        # initial import
        self.branches["main"] = (None, {})
        changes = {}
        for _ in range(p["files"]):
            path = self.new_path(changes)
            lines = tuple(self.text.file(int(r.lognormvariate(p.get("mu", 520) / 100, 0.7)) + 20, path))
            changes[path] = (self.blob(lines), lines)
        lock: list[str] = []
        for _ in range(300):
            lock.extend(self.lock_entry())
        changes["Cargo.lock"] = (self.blob(tuple(lock)), tuple(lock))
        readme = tuple(self.text.words(8, 16) for _ in range(40))
        changes["README.md"] = (self.blob(readme), readme)
        self.commit("main", changes)

        total = p["commits"]
        features: dict[str, int] = {}  # name -> commits left before merge
        releases: list[str] = []
        tag_every = max(50, total // 40)
        minor = 0
        obsolete_made = False
        while self.ncommits < total:
            if self.base_snapshot is None and self.ncommits >= total - incr:
                self.base_snapshot = {b: m for b, (m, _) in self.branches.items()}
                self.base_tags = list(self.tags)
            k = r.random()
            if k < 0.012 and len(features) < 6:
                name = f"feature/{self.text.ident()}"
                if name not in self.branches:
                    self.fork(name, "main")
                    features[name] = r.randint(2, 40)
                continue
            if features and k < 0.20:
                name = r.choice(sorted(features))
                self.random_commit(name)
                features[name] -= 1
                if features[name] <= 0:
                    del features[name]
                    ftip, ffiles = self.branches[name]
                    fbase = self.fork_base.pop(name)
                    # merge: take the feature's version of every path it changed
                    ch = {}
                    for path in set(ffiles) | set(fbase):
                        fv = ffiles.get(path)
                        if fv is not fbase.get(path):
                            ch[path] = fv
                    self.commit("main", ch, merge=ftip)
                    if r.random() < 0.6:
                        # most merged branches are deleted; keep their history reachable only via main
                        del self.branches[name]
                        self.w(f"reset refs/heads/{name}\nfrom 0000000000000000000000000000000000000000\n\n")
                continue
            if releases and k < 0.24:
                self.random_commit(r.choice(releases))
                continue
            self.random_commit("main")
            if self.ncommits % tag_every == 0:
                minor += 1
                tip, files = self.branches["main"]
                tag = f"v0.{minor}.0"
                ident = self.ident()
                self.w(f"tag {tag}\nfrom :{tip}\ntagger {ident}\n")
                self.data(f"Release {tag}\n\n{self.text.words(5, 20)}\n")
                self.tags.append(tag)
                if minor % 3 == 0:
                    rel = f"release/0.{minor}"
                    self.fork(rel, "main")
                    releases = (releases + [rel])[-3:]
                if minor % 5 == 0:
                    self.w(f"reset refs/tags/snapshot-{minor}\nfrom :{tip}\n\n")
                    self.tags.append(f"snapshot-{minor}")
            if not obsolete_made and self.ncommits > total - 3 * incr:
                # a branch that exists in the base state and is deleted upstream afterwards
                self.fork("topic/obsolete", "main")
                self.random_commit("topic/obsolete")
                obsolete_made = True
        # a tag on the final state
        tip, _ = self.branches["main"]
        ident = self.ident()
        self.w(f"tag v1.0.0\nfrom :{tip}\ntagger {ident}\n")
        self.data("Release v1.0.0\n")
        self.tags.append("v1.0.0")
        self.w("done\n")


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("env", git_env())
    kw.setdefault("check", True)
    return subprocess.run(cmd, **kw)


def generate(size: str, seed: int, threads: int, force: bool = False, quiet: bool = False) -> Path:
    p = SIZES[size]
    key = f"{size}-s{seed}-g{GENERATOR_VERSION}"
    cache = WORK_DIR / "repos" / key
    if (cache / "DONE").exists() and not force:
        return cache
    if cache.exists():
        shutil.rmtree(cache)
    cache.mkdir(parents=True)
    up = cache / "upstream.git"
    log = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    t0 = time.monotonic()
    run(["git", "init", "-q", "--bare", "--object-format=sha1", "-b", "main", str(up)])
    for k, v in (("gc.auto", "0"), ("core.logAllRefUpdates", "false"), ("receive.autogc", "false")):
        run(["git", "-C", str(up), "config", k, v])
    marks = cache / "marks"
    fi = subprocess.Popen(
        ["git", "-C", str(up), "fast-import", "--quiet", "--done", f"--export-marks={marks}",
         "--active-branches=20", "--big-file-threshold=512m"],
        stdin=subprocess.PIPE, env=git_env(),
    )
    assert fi.stdin is not None
    out = fi.stdin
    g = Gen(p, seed, out)
    g.run(p["incr"])
    out.close()
    if fi.wait() != 0:
        raise SystemExit("git fast-import failed")
    t1 = time.monotonic()
    log(f"fast-import: {g.ncommits} commits, {g.bytes_out / 1e6:.0f} MB stream, {t1 - t0:.0f}s")

    # base state for the incremental scenario: mark -> oid
    m2o: dict[int, str] = {}
    for line in marks.read_text().splitlines():
        m, oid = line.split()
        m2o[int(m[1:])] = oid
    assert g.base_snapshot is not None and g.base_tags is not None
    run(["git", "-C", str(up), "update-ref", "-d", "refs/heads/topic/obsolete"])
    cur = dict(
        (ref, oid) for oid, ref in (l.split() for l in run(
            ["git", "-C", str(up), "for-each-ref", "--format=%(objectname) %(refname)"],
            capture_output=True, text=True).stdout.splitlines())
    )
    base = {f"refs/heads/{b}": m2o[m] for b, m in g.base_snapshot.items() if m is not None}
    for t in g.base_tags:
        base[f"refs/tags/{t}"] = cur[f"refs/tags/{t}"]
    (cache / "base-refs.txt").write_text("".join(f"{oid} {ref}\n" for ref, oid in sorted(base.items())))
    marks.unlink()

    # make it a realistic packed server repository
    # --keep-unreachable: like a real server shortly after a branch deletion, upstream
    # still has topic/obsolete's commit (the incremental base state points at it)
    run(["git", "-C", str(up), "-c", f"pack.threads={threads}", "repack", "-adf", "-q",
         "--keep-unreachable", "--window=10", "--depth=50"])
    run(["git", "-C", str(up), "prune-packed"])
    run(["git", "-C", str(up), "pack-refs", "--all"])
    t2 = time.monotonic()
    log(f"repack -adf: {t2 - t1:.0f}s")

    packs = list((up / "objects" / "pack").glob("*.pack"))
    refs = run(["git", "-C", str(up), "for-each-ref", "--format=%(objectname) %(refname)"],
               capture_output=True, text=True).stdout
    nobj = int(run(["git", "-C", str(up), "count-objects", "-v"], capture_output=True, text=True)
               .stdout.split("in-pack: ")[1].split()[0])
    meta = dict(
        size=size, seed=seed, generator_version=GENERATOR_VERSION, params=p,
        commits=g.ncommits, objects=nobj, pack_bytes=sum(x.stat().st_size for x in packs),
        packs=len(packs), refs=len(refs.splitlines()),
        refs_sha256=hashlib.sha256(refs.encode()).hexdigest(),
        base_refs=len(base), stream_bytes=g.bytes_out,
        fast_import_seconds=round(t1 - t0, 1), repack_seconds=round(t2 - t1, 1), repack_threads=threads,
    )
    (cache / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    (cache / "DONE").write_text("ok\n")
    log(json.dumps(meta))
    return cache


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="small")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0,
                    help="pack.threads for the final repack (0 = all cores; 1 = byte-identical pack)")
    ap.add_argument("--force", action="store_true", help="regenerate even if cached")
    ap.add_argument("--stream-only", action="store_true",
                    help="write the fast-import stream to stdout instead (for checking determinism)")
    a = ap.parse_args()
    if a.stream_only:
        g = Gen(SIZES[a.size], a.seed, sys.stdout.buffer)
        g.run(SIZES[a.size]["incr"])
        return
    print(generate(a.size, a.seed, a.threads, a.force))


if __name__ == "__main__":
    main()
