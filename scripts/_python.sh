# Sourced by scripts/*: picks the Python to use.
# Inside a virtual environment: that one. Else ./.venv if it exists. Else python3, unless it is
# an "externally managed" system Python (PEP 668), in which case ./.venv is created.
if [[ -n "${VIRTUAL_ENV:-}" ]]; then
  PY=python
elif [[ -x .venv/bin/python ]]; then
  PY=.venv/bin/python
elif python3 -c 'import os, sys, sysconfig; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
  python3 -m venv .venv 2>/dev/null || { ${SUDO:-} apt-get install -y -qq python3-venv && python3 -m venv .venv; }
  PY=.venv/bin/python
else
  PY=python3
fi
