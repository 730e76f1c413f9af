#!/usr/bin/env bash
# Create or update .venv with quantlab and its pinned dependencies. Idempotent: re-installs only when pyproject.toml
# or constraints.txt changed since the last successful install. Needs python3.11 and the package registry.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
stamp="$venv/.quantlab-installed"
want="$(cat "$root/pyproject.toml" "$root/constraints.txt" | sha256sum | cut -d' ' -f1)"
py="${QUANTLAB_PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x "$venv/bin/python" ]; then
  echo "quantlab: creating $venv with $py" >&2
  "$py" -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  log="$venv/install.log"  # pip's own lines (its warnings, the build backend's) go here, not to the terminal
  echo "quantlab: installing pinned dependencies into $venv (first time: a few minutes; pip's output: $log)" >&2
  # torch==2.13.0 is pinned (a CPU build); an unpinned torch would pull several GB of CUDA.
  if ! { "$venv/bin/python" -m pip install -q --upgrade pip &&
         "$venv/bin/python" -m pip install -q -c "$root/constraints.txt" -e "$root[test]"; } > "$log" 2>&1; then
    tail -n 15 "$log" >&2
    echo "quantlab: installing the dependencies failed (pip's whole output: $log)" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
