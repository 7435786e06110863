#!/usr/bin/env bash
# Builds Kalandra in release mode and installs `kalandra` and
# `git-remote-kalandra` into $PREFIX/bin (default: ~/.local/bin), their man
# pages into $PREFIX/share/man/man1, and completions for bash, zsh and fish
# under $PREFIX/share.
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

share="$prefix/share"
"$bin/kalandra" manpages "$share/man/man1"
mkdir -p "$share/bash-completion/completions" "$share/zsh/site-functions" \
    "$share/fish/vendor_completions.d"
"$bin/kalandra" completions bash >"$share/bash-completion/completions/kalandra"
"$bin/kalandra" completions zsh >"$share/zsh/site-functions/_kalandra"
"$bin/kalandra" completions fish >"$share/fish/vendor_completions.d/kalandra.fish"
echo "Installed man pages into $share/man/man1 (man kalandra, man git-remote-kalandra)"
echo "and completions for bash, zsh and fish under $share"

case ":$PATH:" in
    *":$bin:"*) ;;
    *)
        echo
        echo "Note: $bin is not on your PATH. Add it, for example:"
        echo "    export PATH=\"$bin:\$PATH\""
        ;;
esac
