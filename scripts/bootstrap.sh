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
  echo "quantlab: installing pinned dependencies into $venv (first time: a few minutes)" >&2
  "$venv/bin/python" -m pip install -q --upgrade pip
  # torch==2.13.0 is pinned (a CPU build); an unpinned torch would pull several GB of CUDA.
  "$venv/bin/python" -m pip install -q -c "$root/constraints.txt" -e "$root[test]"
  echo "$want" > "$stamp"
fi
