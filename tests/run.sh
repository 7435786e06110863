#!/usr/bin/env bash
# The one test command, for developers and CI alike (.ci/run runs exactly this).
#
# On a fresh Debian machine with only the Rust toolchain and git it installs what the tests
# need, then checks formatting, lints every target with warnings as errors, and runs the whole
# suite (cargo-nextest if present, else cargo test).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Commands the tests need, and the Debian package that provides each. Add new needs here
# (e.g. [sshd]=openssh-server [nginx]=nginx [fcgiwrap]=fcgiwrap); only missing ones are installed.
declare -A NEEDED=(
  [git]=git
  [perl]=perl
  [nginx]=nginx
  [fcgiwrap]=fcgiwrap
  [openssl]=openssl
  [sshd]=openssh-server
  [ssh]=openssh-client
  [ssh-keygen]=openssh-client
  [ssh-agent]=openssh-client
  [ssh-add]=openssh-client
  [script]=bsdutils
  [groff]=groff-base
  [node]=nodejs
  [npm]=npm
  [git-lfs]=git-lfs
  [python3]=python3
  [jgit]=jgit-cli
  [gitolite]=gitolite3
)
# Python modules the tests import with Debian's /usr/bin/python3, and their packages.
declare -A NEEDED_PYTHON=(
  [dulwich]=python3-dulwich
)

have() {
  command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}

has_python_module() {
  /usr/bin/python3 -c "import $1" >/dev/null 2>&1
}

apt_install() {
  echo "tests/run.sh: installing $*" >&2
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "$@"
}

missing=()
for cmd in "${!NEEDED[@]}"; do
  have "$cmd" || missing+=("${NEEDED[$cmd]}")
done
for module in "${!NEEDED_PYTHON[@]}"; do
  has_python_module "$module" || missing+=("${NEEDED_PYTHON[$module]}")
done
# One package may provide several commands: install each once.
if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
fi
if ((${#missing[@]})); then
  apt_install "${missing[@]}"
  for cmd in "${!NEEDED[@]}"; do
    have "$cmd" || { echo "tests/run.sh: $cmd still missing after installing ${NEEDED[$cmd]}" >&2; exit 1; }
  done
  for module in "${!NEEDED_PYTHON[@]}"; do
    has_python_module "$module" || {
      echo "tests/run.sh: python3 cannot import $module after installing ${NEEDED_PYTHON[$module]}" >&2
      exit 1
    }
  done
fi

for component in rustfmt clippy; do
  cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1 || {
    echo "tests/run.sh: the Rust toolchain lacks $component" >&2
    exit 1
  }
done

# The forge contract tests' GitHub API server (tests/forge): its npm packages, exactly as
# package-lock.json pins them, installed again whenever the lock file changed.
forge=tests/forge
if ! cmp -s "$forge/package-lock.json" "$forge/node_modules/.kalandra-installed-lock"; then
  echo "== npm ci (tests/forge)"
  (cd "$forge" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$forge/package-lock.json" "$forge/node_modules/.kalandra-installed-lock"
fi

# A venv (pip in a venv: no clash with Debian's externally managed Python) in DIR/.venv
# holding exactly what DIR/requirements.txt pins, made again whenever that file changed.
pip_venv() {
  local dir=$1
  cmp -s "$dir/requirements.txt" "$dir/.venv/.kalandra-installed-requirements" && return
  echo "== pip install ($dir)"
  rm -rf "$dir/.venv"
  # Debian's python3 makes venvs (with pip) only once python3-venv is installed.
  if ! python3 -m venv "$dir/.venv" >/dev/null 2>&1; then
    apt_install python3-venv
    rm -rf "$dir/.venv"
    python3 -m venv "$dir/.venv"
  fi
  "$dir/.venv/bin/pip" install --quiet --disable-pip-version-check --no-input \
    -r "$dir/requirements.txt"
  cp "$dir/requirements.txt" "$dir/.venv/.kalandra-installed-requirements"
}

# The LFS tests' server (tests/lfs): giftless and its dependencies.
pip_venv tests/lfs
# The interoperability matrix's dulwich 1.2 (tests/interop; 0.21 comes from Debian above).
pip_venv tests/interop

# Regenerate fixtures from their scripts rather than from any archive lying around.
export GIX_TEST_IGNORE_ARCHIVES=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
# Doc tests first: nextest does not run them, and the suite's summary must be the last word.
echo "== cargo test --doc"
cargo test --doc
# Servers the tests start (sshd, nginx, fcgiwrap, git daemon, ...) live under temporary
# directories named kalandra-it-*; list those still running, whoever started them.
leftover_servers() {
  local pid cmd
  for pid in $(pgrep -f 'kalandra-it-' || true); do
    [ "$pid" = "$$" ] && continue
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
    case "$cmd" in *nextest*|*cargo*|*tests/run.sh*) continue ;; esac
    echo "$pid $cmd"
  done
}
before=$(leftover_servers | cut -d' ' -f1 | sort)

status=0
if cargo nextest --version >/dev/null 2>&1; then
  echo "== cargo nextest run"
  cargo nextest run --all-targets --no-fail-fast || status=$?
else
  echo "== cargo test (cargo-nextest not found)"
  cargo test --all-targets --no-fail-fast || status=$?
fi

# Every server a test started must be gone by now (each harness ends its process group).
# Silent when clean, so that the test runner's summary stays the last word.
sleep 1
left=$(leftover_servers | while read -r pid rest; do
  grep -qx "$pid" <<<"$before" || echo "$pid $rest"
done)
if [ -n "$left" ]; then
  echo "tests/run.sh: the suite left servers running:" >&2
  echo "$left" >&2
  exit 1
fi
exit "$status"
