#!/usr/bin/env bash
# The one test command (README): installs what the tests need, then runs ruff and pytest.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${AUDIOCNN_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    # A fresh install of the CUDA build of torch takes about 6 GB; say so up front
    # instead of failing half-way with pip's "No space left on device".
    free_kb=$(df -Pk . | awk 'NR==2 {print $4}')
    if [ "$free_kb" -lt 7000000 ]; then
        echo "warning: only $((free_kb / 1024)) MB free here; installing the test environment needs about 7 GB" >&2
    fi
    python3 -m venv "$VENV"
fi
# --no-cache-dir: the wheels are installed once per clone, so a cached copy only doubles
# the disk used (several GB for torch and its CUDA libraries).
"$VENV/bin/python" -m pip install --quiet --no-cache-dir --upgrade pip
"$VENV/bin/python" -m pip install --quiet --no-cache-dir -r requirements-dev.txt

# Debian's Chromium drives the browser end-to-end test (Playwright never downloads a browser);
# the colour emoji font keeps the page icons legible in its screenshots.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || missing+=(fonts-noto-color-emoji)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) \
        || echo "warning: could not install ${missing[*]}; the browser test may be skipped"
fi

"$VENV/bin/ruff" check .
"$VENV/bin/python" -m pytest "$@"
