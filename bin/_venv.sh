# Sourced by bin/serve and bin/test: a project-local virtualenv, (re)installed only when what it
# installs changed (the pyproject files, the install arguments, the Python), so a second start
# costs no pip run. Gonglun itself is installed editable: code changes need no reinstall.
PY=${PYTHON:-python3}

ensure_venv() {  # ensure_venv DIR PIP-INSTALL-ARGUMENTS...
  local dir=$1; shift
  local stamp
  stamp=$( (cat pyproject.toml examples/gonglun-hello/pyproject.toml 2>/dev/null; echo "$*";
            "$PY" --version) | sha256sum | cut -c1-32)
  if [ ! -x "$dir/bin/python" ]; then
    "$PY" -m venv "$dir"
  fi
  if [ "$(cat "$dir/.installed" 2>/dev/null)" != "$stamp" ]; then
    "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@"
    echo "$stamp" > "$dir/.installed"
  fi
}
