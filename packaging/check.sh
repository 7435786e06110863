#!/usr/bin/env bash
# Builds packaging/Containerfile's runtime stage with podman and checks the image,
# without running a container (see packaging/README.md, "What was verified").
# A manual/bench step, not part of tests/run.sh: it needs podman and a Debian base image.
#
#   packaging/check.sh [--binary PATH] [--base IMAGE]
#
#   --binary PATH  the static kalandra to put in the image (default: build it here, as the
#                  Containerfile's build stage does: cargo build --release --locked
#                  --bin kalandra --target x86_64-unknown-linux-musl, into
#                  ${CARGO_TARGET_DIR:-target})
#   --base IMAGE   the runtime base (default: the Containerfile's RUNTIME_IMAGE,
#                  docker.io/library/debian:bookworm-slim). Where registries cannot be
#                  reached, make one from Debian's packages:
#                    debootstrap --variant=minbase bookworm ROOT http://deb.debian.org/debian
#                    tar -C ROOT -c --numeric-owner . | podman import - localhost/bookworm
#
# What it does:
#  1. builds the image from the Containerfile with its build stage replaced by the given
#     binary (FROM scratch + COPY); the runtime stage is used verbatim. The build uses
#     --isolation chroot (RUN works where crun cannot start containers) and --format
#     docker (keeps the HEALTHCHECK);
#  2. inspects the image: user 65532:65532, ENTRYPOINT, CMD, EXPOSE 9180, HEALTHCHECK,
#     no VOLUME, the files kalandra needs (git-upload-pack, git-receive-pack, CA bundle);
#  3. runs the image's own files without a container runtime: `podman create` + `podman
#     mount`, then chroot into it as uid 65532 with the image's environment and
#       - kalandra --version;
#       - kalandra sync between two local repositories (git from the image);
#       - if the binary has `watch`: the image's CMD with a small config, then the
#         HEALTHCHECK's own curl command against /healthz, then SIGTERM => exit 0.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
binary=
base=
while [ $# -gt 0 ]; do
    case $1 in
        --binary) binary=$2; shift 2 ;;
        --base) base=$2; shift 2 ;;
        *) echo "usage: $0 [--binary PATH] [--base IMAGE]" >&2; exit 2 ;;
    esac
done
say() { printf 'check.sh: %s\n' "$*"; }
fail() { printf 'check.sh: FAIL: %s\n' "$*" >&2; exit 1; }

if [ -z "$binary" ]; then
    target=x86_64-unknown-linux-musl
    (cd "$root" && cargo build --release --locked --bin kalandra --target "$target")
    binary=${CARGO_TARGET_DIR:-$root/target}/$target/release/kalandra
fi
file "$binary" | grep -q 'statically linked\|static-pie linked' \
    || fail "$binary is not a static binary"
say "binary: $binary (static)"

work=$(mktemp -d)
tag=localhost/kalandra-check:$$
ctr=
mnt=
cleanup() {
    set +e
    if [ -n "$mnt" ]; then
        umount "$mnt/proc" "$mnt/dev" 2>/dev/null
    fi
    [ -n "$ctr" ] && podman rm -f "$ctr" >/dev/null 2>&1
    podman rmi -f "$tag" >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT

# 1. The runtime stage, verbatim, after a build stage that only holds the binary.
cp "$binary" "$work/kalandra"
{
    echo 'FROM scratch AS build'
    echo 'COPY kalandra /out/kalandra'
    sed -n '/^FROM .* AS runtime$/,$p' "$here/Containerfile"
} > "$work/Containerfile"
grep -q '^FROM ${RUNTIME_IMAGE} AS runtime$' "$work/Containerfile" \
    || fail "no 'FROM \${RUNTIME_IMAGE} AS runtime' stage in the Containerfile"
args=(--format docker --isolation chroot -t "$tag" -f "$work/Containerfile")
args+=(--build-arg "RUNTIME_IMAGE=${base:-docker.io/library/debian:bookworm-slim}")
podman build "${args[@]}" "$work" >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "podman build"; }
say "built $tag from the runtime stage on ${base:-debian:bookworm-slim}"

# 2. The image's config.
cfg=$(podman image inspect --format '{{json .Config}}' "$tag")
python3 - "$cfg" <<'PY' || fail "image config"
import json, sys
c = json.loads(sys.argv[1])
want = {
    "User": "65532:65532",
    "Entrypoint": ["kalandra"],
    "Cmd": ["watch", "--config", "/etc/kalandra/mirrors.toml", "--listen", "0.0.0.0:9180"],
    "ExposedPorts": {"9180/tcp": {}},
}
for k, v in want.items():
    if c.get(k) != v:
        sys.exit(f"{k} is {c.get(k)!r}, want {v!r}")
if c.get("Volumes"):
    sys.exit(f"the image declares volumes: {c['Volumes']}")
hc = (c.get("Healthcheck") or {}).get("Test") or []
if "http://127.0.0.1:9180/healthz" not in hc:
    sys.exit(f"no HEALTHCHECK on /healthz: {hc!r}")
env = dict(e.split("=", 1) for e in c.get("Env", []))
if env.get("HOME") != "/home/kalandra":
    sys.exit(f"HOME is {env.get('HOME')!r}")
print("check.sh: image config: user 65532:65532, entrypoint, cmd, port 9180, healthcheck, no volume, HOME")
PY

# 3. The image's files, run under chroot as the image's user.
ctr=$(podman create "$tag")
mnt=$(podman mount "$ctr")
mount --bind /dev "$mnt/dev"
mount -t proc proc "$mnt/proc"
for f in /usr/local/bin/kalandra /usr/lib/git-core/git-upload-pack /usr/lib/git-core/git-receive-pack \
         /etc/ssl/certs/ca-certificates.crt /usr/bin/curl; do
    [ -e "$mnt$f" ] || fail "$f is not in the image"
done
say "files: kalandra, git-upload-pack, git-receive-pack, CA bundle, curl"
envs=()
while IFS= read -r e; do envs+=("$e"); done < <(podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$tag" | sed '/^$/d')
in_image() { chroot --userspec=65532:65532 "$mnt" /usr/bin/env -i "${envs[@]}" "$@"; }

in_image kalandra --version
in_image sh -c 'cd /tmp && git init -q up && cd up && git -c user.name=t -c user.email=t@t commit -q --allow-empty -m one \
    && git init -q --bare /tmp/down.git' || fail "git in the image"
in_image kalandra sync /tmp/up /tmp/down.git >/dev/null || fail "kalandra sync between local repositories"
[ "$(in_image git -C /tmp/up rev-parse HEAD)" = "$(in_image git -C /tmp/down.git rev-parse HEAD)" ] \
    || fail "downstream did not get upstream's commit"
say "kalandra sync of local repositories works as uid 65532 with the image's git"

if in_image kalandra watch --help >/dev/null 2>&1; then
    mkdir -p "$mnt/etc/kalandra"
    printf '[[mirror]]\nname = "up"\nupstream = "/tmp/up"\ndownstream = "/tmp/down.git"\ninterval = "1h"\n' \
        > "$mnt/etc/kalandra/mirrors.toml"
    # The image's CMD, as its ENTRYPOINT would run it.
    in_image kalandra watch --config /etc/kalandra/mirrors.toml --listen 0.0.0.0:9180 >"$work/watch.log" 2>&1 &
    pid=$!
    ok=
    for _ in $(seq 50); do
        if in_image curl -fsS -o /dev/null http://127.0.0.1:9180/healthz 2>/dev/null; then ok=1; break; fi
        sleep 0.2
    done
    [ -n "$ok" ] || { kill "$pid"; cat "$work/watch.log"; fail "the HEALTHCHECK command did not succeed"; }
    kill -TERM "$pid"
    wait "$pid" || { cat "$work/watch.log"; fail "watch did not exit 0 on SIGTERM"; }
    say "watch: the image's CMD serves /healthz to the HEALTHCHECK's curl; SIGTERM exits 0"
else
    say "skipped: watch (this kalandra has no watch subcommand yet)"
fi
say "ok"
