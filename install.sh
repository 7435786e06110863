#!/usr/bin/env bash
# Builds Kalandra in release mode and installs `kalandra` and
# `git-remote-kalandra` into $PREFIX/bin (default: ~/.local/bin).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
prefix=${PREFIX:-$HOME/.local}
bin="$prefix/bin"

if ! command -v cargo >/dev/null 2>&1; then
    echo "install.sh: cargo is needed to build Kalandra (https://rustup.rs)" >&2
    exit 1
fi
if ! command -v git >/dev/null 2>&1; then
    echo "install.sh: git is needed at run time (for local repositories)" >&2
    exit 1
fi

cargo build --release --locked --manifest-path "$here/Cargo.toml"
target=${CARGO_TARGET_DIR:-$here/target}
mkdir -p "$bin"
install -m 0755 "$target/release/kalandra" "$target/release/git-remote-kalandra" "$bin/"
echo "Installed kalandra and git-remote-kalandra into $bin"

case ":$PATH:" in
    *":$bin:"*) ;;
    *)
        echo
        echo "Note: $bin is not on your PATH. Add it, for example:"
        echo "    export PATH=\"$bin:\$PATH\""
        ;;
esac
