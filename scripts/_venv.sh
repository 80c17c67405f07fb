# Sourced by the scripts: make .venv (Python >= 3.11) and install reflow into it.
# Usage: ensure_venv [extras]   e.g. ensure_venv dev
ensure_venv() {
  local extras="${1:-}"
  local python="${PYTHON:-python3}"
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "reflow needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
    exit 2
  fi
  if [[ ! -x .venv/bin/python ]]; then
    "$python" -m venv .venv
  fi
  local target="."
  [[ -n "$extras" ]] && target=".[${extras}]"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$target"
}
