#!/usr/bin/env bash
# Run the test suite (arguments go to pytest), after making sure the browser test has its Chromium.
#   scripts/test.sh                       # everything
#   scripts/test.sh tests/test_tensorboard_browser.py -q
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
    echo "scripts/test.sh: /usr/bin/chromium is missing; installing Debian's chromium" >&2
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update && apt-get install -y chromium
    else
        sudo apt-get update && sudo apt-get install -y chromium
    fi
fi
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python
    elif [ -n "${VIRTUAL_ENV:-}" ]; then PYTHON="$VIRTUAL_ENV/bin/python"
    else PYTHON=python3
    fi
fi
exec "$PYTHON" -m pytest "$@"
