# Sourced by the scripts beside it: make sure ./.venv exists and holds
# attestd with its test and lint extras, installing from nothing if needed.
# shellcheck shell=bash
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$top/.venv"
stamp="$venv/.attestd-installed"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$top/pyproject.toml" -nt "$stamp" ]; then
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e "$top[test,lint]"
    touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
