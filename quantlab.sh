#!/usr/bin/env bash
# Run quantlab, installing it into .venv first if needed:  ./quantlab.sh run   (see README.md)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$root/scripts/bootstrap.sh"
exec "$root/.venv/bin/quantlab" "$@"
