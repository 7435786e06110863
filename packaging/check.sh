#!/usr/bin/env bash
# Builds packaging/Containerfile's runtime stage with podman and checks the image,
# without running a container (see packaging/README.md, "What was verified").
# A manual/bench step, not part of tests/run.sh: it needs podman and a Debian base image.
#
#   packaging/check.sh [--binary PATH | --rust-image IMAGE] [--base IMAGE]
#
#   --binary PATH  the static kalandra to put in the image (default: build it here, as the
#                  Containerfile's build stage does: cargo build --release --locked
#                  --bin kalandra --target x86_64-unknown-linux-musl, into
#                  ${CARGO_TARGET_DIR:-target})
#   --rust-image IMAGE
#                  build the whole Containerfile verbatim, both stages, with this as
#                  RUST_IMAGE (default of the Containerfile: docker.io/library/rust:1-bookworm;
#                  the context is the repository, filtered by .dockerignore)
#   --base IMAGE   the runtime base (default: the Containerfile's RUNTIME_IMAGE,
#                  docker.io/library/debian:bookworm-slim). Where registries cannot be
#                  reached, make one from Debian's packages:
#                    debootstrap --variant=minbase bookworm ROOT http://deb.debian.org/debian
#                    tar -C ROOT -c --numeric-owner . | podman import - localhost/bookworm
#
# What it does:
#  1. builds the image: with --rust-image, the Containerfile as it is; otherwise with its
#     build stage replaced by the given binary, stripped of debug info as there (FROM
#     scratch + COPY), and the runtime stage verbatim. The build uses
#     --isolation chroot (RUN works where crun cannot start containers) and --format
#     docker (keeps the HEALTHCHECK);
#  2. inspects the image: user 65532:65532, ENTRYPOINT, CMD, EXPOSE 9180, HEALTHCHECK,
#     no VOLUME, the files kalandra needs (git-upload-pack, git-receive-pack, CA bundle);
#  3. runs the image's own files without a container runtime: `podman create` + `podman
#     mount`, then chroot into it as uid 65532 with the image's environment and
#       - kalandra --version;
#       - kalandra sync between two local repositories (git from the image);
#       - if the binary has `watch`: the image's CMD with a one-mirror config (local
#         repositories), the HEALTHCHECK's own curl command against /healthz, /status
#         until the mirror's first sync succeeded (downstream has upstream's new commit),
#         then SIGTERM => exit 0.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
binary=
base=
rust_image=
while [ $# -gt 0 ]; do
    case $1 in
        --binary) binary=$2; shift 2 ;;
        --base) base=$2; shift 2 ;;
        --rust-image) rust_image=$2; shift 2 ;;
        *) echo "usage: $0 [--binary PATH | --rust-image IMAGE] [--base IMAGE]" >&2; exit 2 ;;
    esac
done
say() { printf 'check.sh: %s\n' "$*"; }
fail() { printf 'check.sh: FAIL: %s\n' "$*" >&2; exit 1; }

if [ -z "$binary" ] && [ -z "$rust_image" ]; then
    target=x86_64-unknown-linux-musl
    (cd "$root" && cargo build --release --locked --bin kalandra --target "$target")
    binary=${CARGO_TARGET_DIR:-$root/target}/$target/release/kalandra
fi

work=$(mktemp -d)
tag=localhost/kalandra-check:$$
ctr=
mnt=
cleanup() {
    set +e
    [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null
    if [ -n "$mnt" ]; then
        umount "$mnt/proc" "$mnt/dev" 2>/dev/null
    fi
    [ -n "$ctr" ] && podman rm -f "$ctr" >/dev/null 2>&1
    podman rmi -f "$tag" >/dev/null 2>&1
    rm -rf "$work"
}
trap cleanup EXIT

args=(--format docker --isolation chroot --layers=false -t "$tag")
[ -z "$base" ] || args+=(--build-arg "RUNTIME_IMAGE=$base")
if [ -n "$rust_image" ]; then
    # 1. The whole Containerfile, verbatim.
    args+=(-f "$here/Containerfile" --build-arg "RUST_IMAGE=$rust_image")
    context=$root
    say "building both stages (a release build: minutes)"
else
    # 1. The runtime stage, verbatim, after a build stage that only holds the binary.
    cp "$binary" "$work/kalandra"
    strip --strip-debug "$work/kalandra"    # as the build stage does
    {
        sed -n '1,/^FROM /{/^ARG /p}' "$here/Containerfile"    # the global ARGs (RUNTIME_IMAGE)
        echo 'FROM scratch AS build'
        echo 'COPY kalandra /out/kalandra'
        sed -n '/^FROM .* AS runtime$/,$p' "$here/Containerfile"
    } > "$work/Containerfile"
    grep -q '^FROM ${RUNTIME_IMAGE} AS runtime$' "$work/Containerfile" \
        || fail "no 'FROM \${RUNTIME_IMAGE} AS runtime' stage in the Containerfile"
    args+=(-f "$work/Containerfile")
    context=$work
fi
podman build "${args[@]}" "$context" >"$work/build.log" 2>&1 || { cat "$work/build.log"; fail "podman build"; }
grep -E '^Setting up (git|curl|ca-certificates) ' "$work/build.log" || true    # unless the base had them
size=$(podman image inspect --format '{{.Size}}' "$tag")
say "built $tag ${rust_image:+(both stages, on $rust_image) }on ${base:-debian:bookworm-slim}: $((size / 1000000)) MB"

# 2. The image's config.
cfg=$(podman image inspect "$tag")
python3 - "$cfg" <<'PY' || fail "image config"
import json, sys
(image,) = json.loads(sys.argv[1])
c = image["Config"]
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
# podman shows a docker-format image's health check beside its Config, not in it
hc = (image.get("Healthcheck") or c.get("Healthcheck") or {}).get("Test") or []
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
file -L "$mnt/usr/local/bin/kalandra" | grep -q 'statically linked\|static-pie linked' \
    || fail "the image's kalandra is not a static binary"
file -L "$mnt/usr/local/bin/kalandra" | grep -q 'with debug_info' \
    && fail "the image's kalandra still has its debug info"
say "files: kalandra (static, no debug info), git-upload-pack, git-receive-pack, CA bundle, curl"
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
    in_image git -C /tmp/up -c user.name=t -c user.email=t@t commit -q --allow-empty -m two
    # The image's CMD, as its ENTRYPOINT would run it; it syncs the new commit at start.
    # Not through in_image: $! must be kalandra's pid (chroot and env exec it), not a subshell's.
    chroot --userspec=65532:65532 "$mnt" /usr/bin/env -i "${envs[@]}" \
        kalandra watch --config /etc/kalandra/mirrors.toml --listen 0.0.0.0:9180 >"$work/watch.log" 2>&1 &
    pid=$!
    ok=
    for _ in $(seq 50); do
        if in_image curl -fsS -o /dev/null http://127.0.0.1:9180/healthz 2>/dev/null; then ok=1; break; fi
        sleep 0.2
    done
    [ -n "$ok" ] || { kill "$pid"; cat "$work/watch.log"; fail "the HEALTHCHECK command did not succeed"; }
    synced=
    for _ in $(seq 50); do
        if in_image curl -fsS http://127.0.0.1:9180/status 2>/dev/null \
            | python3 -c 'import json,sys; m=json.load(sys.stdin)["mirrors"][0]; sys.exit(not (m["last"] or {}).get("ok"))'; then
            synced=1; break
        fi
        sleep 0.2
    done
    [ -n "$synced" ] || { kill "$pid"; cat "$work/watch.log"; fail "/status shows no successful sync"; }
    kill -TERM "$pid"
    code=0
    wait "$pid" || code=$?
    [ "$code" = 0 ] || { cat "$work/watch.log"; fail "watch exited $code on SIGTERM, not 0"; }
    [ "$(in_image git -C /tmp/up rev-parse HEAD)" = "$(in_image git -C /tmp/down.git rev-parse HEAD)" ] \
        || fail "watch did not sync the new commit"
    say "watch: the image's CMD serves /healthz to the HEALTHCHECK's curl, syncs a local mirror; SIGTERM exits 0"
else
    say "skipped: watch (this kalandra has no watch subcommand yet)"
fi
say "ok"
