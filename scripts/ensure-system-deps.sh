#!/usr/bin/env bash
# Make sure the binaries the integration tests talk to are present.
# Installs Debian packages when they are missing and we are root; otherwise
# says exactly what to install and fails.
set -euo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v socat >/dev/null 2>&1 || need+=(socat)
command -v mbpoll >/dev/null 2>&1 || need+=(mbpoll)
# Headless Chromium for the report test (tests/edge_agent/report/test_browser.py; it skips without).
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian packages for the tests: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || true
  # mbpoll and chromium are optional (their tests skip without them); mosquitto and socat are required.
  for p in "${need[@]}"; do
    apt-get install -y -qq --no-install-recommends "$p" >/dev/null || echo "Could not install $p" >&2
  done
else
  echo "Missing test binaries: ${need[*]}. Install them with: sudo apt-get install ${need[*]}" >&2
fi
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || { echo "mosquitto is required for the tests" >&2; exit 1; }
