#!/usr/bin/env bash
# Headless Chromium for tests/test_app_browser.py (Debian/Ubuntu package; Playwright drives it through
# executable_path=/usr/bin/chromium, so `playwright install` is never needed). Idempotent: does nothing if present.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    /usr/bin/chromium --version 2>/dev/null || true
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium
/usr/bin/chromium --version 2>/dev/null || true
