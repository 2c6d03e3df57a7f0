#!/usr/bin/env bash
# The README's test command: set up .venv with the test extra, install what the tests need
# from the system's package manager (Debian's chromium, for the TensorBoard browser test), make
# .venv-scalesim (SCALE-Sim with numpy<2.3, for the processor cross-check),
# check the code with ruff, and run the whole test suite.  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
    echo "installing Debian's chromium (the TensorBoard browser test drives it)"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
fi

python3 -m venv .venv
.venv/bin/pip install -q -e '.[test]'
# SCALE-Sim (the independent simulator tests/test_processor_scalesim.py runs) needs numpy<2.3: its own venv
if [ ! -x .venv-scalesim/bin/python ]; then
    python3 -m venv .venv-scalesim
fi
.venv-scalesim/bin/pip install -q scalesim 'numpy<2.3'
.venv/bin/ruff check tfbench tests
.venv/bin/python -m pytest "$@"
