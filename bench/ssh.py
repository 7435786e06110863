#!/usr/bin/env python3
"""The relay over ssh on both sides, against the same relay over file:// and
the naive `git clone --mirror` + `git push --mirror` over ssh, in one run.

Starts its own OpenSSH sshd on 127.0.0.1 (a temporary config, host key and
client key; needs root for sshd's privilege separation directory), then
mirrors a repository made by gen_repo.py into empty bare repositories:

    python3 bench/ssh.py [--size small] [--repeat 3] [--kalandra target/release/kalandra]

Prints each leg's median wall time, the ratios, and kalandra's peak RSS.
Every kalandra run is verified (refs equal, fsck --connectivity-only).
"""
import argparse, os, shutil, socket, statistics, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gen_repo  # noqa: E402

ENV = dict(os.environ, TZ="UTC", LANG="C", LC_ALL="C", GIT_CONFIG_NOSYSTEM="1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sshd(tmp: Path) -> tuple[subprocess.Popen, int]:
    for name in ("hostkey", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / name)], check=True)
    shutil.copy(tmp / "client.pub", tmp / "authorized_keys")
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    port = free_port()
    git_dir = Path(shutil.which("git")).parent
    (tmp / "sshd_config").write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {tmp}/hostkey
AuthorizedKeysFile {tmp}/authorized_keys
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
UsePAM no
PidFile {tmp}/sshd.pid
AcceptEnv GIT_PROTOCOL
SetEnv PATH={git_dir}:/usr/bin:/bin
""")
    sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(tmp / "sshd_config")],
                            stderr=open(tmp / "sshd.log", "w"))
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        sys.exit(f"sshd did not start: {(tmp / 'sshd.log').read_text()}")
    home = tmp / "home"
    (home / ".ssh").mkdir(parents=True)
    shutil.copy(tmp / "client", home / ".ssh" / "id_ed25519")
    key = " ".join((tmp / "hostkey.pub").read_text().split()[:2])
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{port} {key}\n")
    return sshd, port


def timed(cmd: list[str], env: dict, rss: bool = False) -> tuple[float, int]:
    start = time.monotonic()
    proc = subprocess.Popen(cmd, env=env)
    hwm = 0
    while proc.poll() is None:
        if rss:
            try:
                for line in open(f"/proc/{proc.pid}/status"):
                    if line.startswith("VmHWM:"):
                        hwm = max(hwm, int(line.split()[1]) * 1024)
            except OSError:
                pass
        time.sleep(0.01)
    if proc.returncode != 0:
        sys.exit(f"{cmd} exited {proc.returncode}")
    return time.monotonic() - start, hwm


def verify(up: Path, down: Path) -> None:
    refs = lambda r: subprocess.run(["git", "-C", str(r), "for-each-ref", "refs/heads", "refs/tags"],
                                    capture_output=True, env=ENV).stdout
    ok = refs(up) == refs(down) and subprocess.run(
        ["git", "-C", str(down), "fsck", "--connectivity-only"], capture_output=True, env=ENV).returncode == 0
    if not ok:
        sys.exit(f"verification failed for {down}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="small", choices=sorted(gen_repo.SIZES))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--kalandra", default=str(HERE.parent / "target/release/kalandra"))
    a = ap.parse_args()
    up = HERE / "work" / "repos" / f"{a.size}-s{a.seed}-g{gen_repo.GENERATOR_VERSION}" / "upstream.git"
    if not up.exists():
        sys.exit(f"generate the repository first: python3 bench/gen_repo.py --size {a.size}")
    (HERE / "work").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=HERE / "work") as t:
        tmp = Path(t)
        sshd, port = start_sshd(tmp)
        try:
            kenv = dict(ENV, HOME=str(tmp / "home"))
            genv = dict(ENV, GIT_SSH_COMMAND=f"ssh -F /dev/null -i {tmp}/client "
                                             f"-o UserKnownHostsFile={tmp}/home/.ssh/known_hosts")
            ssh = lambda p: f"ssh://root@127.0.0.1:{port}{p}"
            legs = {"file": [], "ssh": [], "naive-ssh": []}
            rss = []
            for i in range(a.repeat):
                for leg in legs:
                    down = tmp / f"{leg}-{i}.git"
                    subprocess.run(["git", "init", "-q", "--bare", str(down)], check=True, env=ENV)
                    if leg == "file":
                        wall, hwm = timed([a.kalandra, "sync", "-q", str(up), str(down)], kenv, rss=True)
                    elif leg == "ssh":
                        wall, hwm = timed([a.kalandra, "sync", "-q", ssh(up), ssh(down)], kenv, rss=True)
                    else:
                        mirror = tmp / f"mirror-{i}.git"
                        w1, _ = timed(["git", "clone", "-q", "--mirror", ssh(up), str(mirror)], genv)
                        w2, _ = timed(["git", "-C", str(mirror), "push", "-q", "--mirror", ssh(down)], genv)
                        wall, hwm = w1 + w2, 0
                        shutil.rmtree(mirror)
                    verify(up, down)
                    legs[leg].append(wall)
                    if hwm:
                        rss.append(hwm)
                    shutil.rmtree(down)
            med = {k: statistics.median(v) for k, v in legs.items()}
            print(f"{a.size}: file {med['file']:.2f} s | ssh {med['ssh']:.2f} s | naive over ssh {med['naive-ssh']:.2f} s"
                  f" | ssh/file {med['ssh'] / med['file']:.2f}x | ssh/naive {med['ssh'] / med['naive-ssh']:.2f}x"
                  f" | kalandra peak RSS {max(rss) / 2**20:.1f} MiB | load {os.getloadavg()[0]:.1f}")
        finally:
            sshd.terminate()


if __name__ == "__main__":
    main()
