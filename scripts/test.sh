#!/usr/bin/env bash
# Run the test suite, installing quantlab into .venv first if needed. Extra arguments go to pytest
# (e.g. `scripts/test.sh -m slow` for the end-to-end tests on the real Gemma3-270M).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/bootstrap.sh"
cd "$root"
set +e
"$root/.venv/bin/python" -m pytest "$@"
rc=$?
set -e
# pytest exits 5 when no test was collected (e.g. a marker that selects nothing): not a failure of the code.
if [ "$rc" -eq 5 ]; then echo "no tests collected"; exit 0; fi
exit "$rc"
