#!/usr/bin/env bash
# Creates (or reuses) the CrewAI example's venv and installs requirements.txt into it.
#   CREWAI_VENV   where the venv lives (default /var/tmp/airlock-crewai-venv)
#   PYTHON        the interpreter to build it with (default python3, needs >= 3.10)
# Idempotent: when the venv already imports crewai at the pinned version (and the mcp
# pin), nothing is installed. Prints the venv's python path as its last line.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${CREWAI_VENV:-/var/tmp/airlock-crewai-venv}"
py="${PYTHON:-python3}"
want_crewai="$(sed -n 's/^crewai==\([^ ]*\).*/\1/p' "$here/requirements.txt")"
want_mcp="$(sed -n 's/^mcp==\([^ ]*\).*/\1/p' "$here/requirements.txt")"

installed() {
  [ -x "$venv/bin/python" ] || return 1
  "$venv/bin/python" - "$want_crewai" "$want_mcp" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
import crewai, mcp, httpx  # noqa: F401
sys.exit(0 if (version("crewai"), version("mcp")) == (sys.argv[1], sys.argv[2]) else 1)
PY
}

if installed; then
  echo "crewai venv: $venv already has crewai==$want_crewai, mcp==$want_mcp" >&2
else
  if [ ! -x "$venv/bin/python" ]; then
    echo "crewai venv: creating $venv" >&2
    "$py" -m venv "$venv"
  fi
  echo "crewai venv: installing $here/requirements.txt (about 1 GB, a minute or two)" >&2
  start=$(date +%s)
  "$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt" >&2
  installed || { echo "crewai venv: install finished but crewai==$want_crewai / mcp==$want_mcp does not import" >&2; exit 1; }
  echo "crewai venv: ready in $(( $(date +%s) - start )) s" >&2
fi
echo "$venv/bin/python"
