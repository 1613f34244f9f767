#!/usr/bin/env bash
# Set up a fresh machine: graphviz's `dot` (Debian package) where it is missing, Chromium for the
# browser tests (dev), and a virtualenv
# in .venv with tapfinder installed in editable mode with the given extras (default: dev).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"

if ! command -v dot >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq graphviz >/dev/null
  else
    echo "setup: graphviz's 'dot' is missing and apt-get is not available;" \
         "install graphviz with your package manager (brew install graphviz, ...)" >&2
    exit 1
  fi
fi

# The browser tests of the HTML page (dev only) drive headless Chromium with Selenium.
if [[ "$extras" == *dev* ]] && ! command -v chromedriver >/dev/null 2>&1 \
    && command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null \
    || echo "setup: could not install chromium; the browser tests will be skipped" >&2
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${extras}]"
echo "setup: .venv ready with tapfinder[${extras}]; dot: $(command -v dot)"
