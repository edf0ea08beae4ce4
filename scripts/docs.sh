#!/usr/bin/env bash
# Build the documentation site (mkdocs-material, API reference from the docstrings by
# mkdocstrings) into build/site, failing on any warning: a broken link or anchor, a page
# missing from the nav, a docstring mkdocstrings cannot parse, an undocumented setting.
# Installs the `docs` extra into the virtual environment first. Extra arguments go to mkdocs.
set -euo pipefail
cd "$(dirname "$0")/.."
export VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q -e ".[docs]"
# mkdocs-material prints an end-of-life banner on every build; it is not a warning about us.
export NO_MKDOCS_2_WARNING=1
"$VENV/bin/mkdocs" build --strict "$@"
