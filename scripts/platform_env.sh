#!/usr/bin/env bash
# Create (once) the TensorFlow 2.10 environment the platform tests run the Epoch File in:
# Python 3.10 + tests/epoca_runtime/requirements.txt, in .venv-tf210 (kept between runs).
# The interpreter is looked up as a user would: python3.10 on PATH, then pyenv's versions.
# Without one, say how to enable the tests and exit 0: those tests then skip.
# Usage: scripts/platform_env.sh [DIR]   (make platform-env)
set -uo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-$here/.venv-tf210}"
requirements="$here/tests/epoca_runtime/requirements.txt"
stamp="$dir/.installed-$(sha256sum "$requirements" | cut -c1-16)"
[ -f "$stamp" ] && exit 0

works() { "$1" -c 'import sys, venv; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; }
python=""
if command -v python3.10 >/dev/null 2>&1 && works python3.10; then
  python="$(command -v python3.10)"
else
  for candidate in $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.10*/bin/python3.10 2>/dev/null | sort -V -r); do
    if works "$candidate"; then python="$candidate"; break; fi
  done
fi
if [ -z "$python" ]; then
  echo "platform tests will skip: no Python 3.10 found (install python3.10 or 'pyenv install 3.10', then make platform-env)"
  exit 0
fi
echo "creating $dir with $python (TensorFlow 2.10, once)"
rm -rf "$dir"
"$python" -m venv "$dir" && "$dir/bin/pip" install --quiet --upgrade pip >/dev/null 2>&1
"$dir/bin/pip" install --quiet -r "$requirements" 2>&1 | grep -v "^WARNING: Location" || true
if "$dir/bin/python" -c 'import tensorflow, h5py, numpy, pandas' >/dev/null 2>&1; then
  touch "$stamp"
else
  echo "platform tests will skip: installing $requirements into $dir failed (see above; rerun make platform-env)"
fi
exit 0
