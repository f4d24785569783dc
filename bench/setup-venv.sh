#!/usr/bin/env bash
# Create bench/.venv with the Python peers (requirements.txt) and print its
# python path as the last stdout line. Idempotent: pip runs only when the venv
# is new or requirements.txt changed (its hash is kept in a stamp file).
# All progress goes to stderr so callers can do: PY=$(bench/setup-venv.sh | tail -1)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
req="$here/requirements.txt"
stamp="$venv/.requirements.sha256"
py="$venv/bin/python"

if [[ ! -x "$py" ]]; then
  echo "setup-venv: creating $venv" >&2
  python3 -m venv "$venv" >&2
fi

want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
  echo "setup-venv: installing $req" >&2
  "$py" -m pip install --disable-pip-version-check -q -r "$req" >&2
  # Write the stamp only after a successful install, so a failed one is retried.
  echo "$want" > "$stamp"
else
  echo "setup-venv: requirements up to date" >&2
fi

echo "$py"
