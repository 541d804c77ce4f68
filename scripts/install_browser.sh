#!/usr/bin/env bash
# Installs Debian's chromium, the browser the page tests drive through Playwright
# (imgsearch_pipeline_tests/api/test_page_browser.py). Playwright's own browser download is not used.
# Does nothing when /usr/bin/chromium is already there.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "install_browser.sh: $CHROMIUM is missing, and installing it needs root:" >&2
    echo "  run this script as root, or with password-less sudo, or: sudo apt-get install --no-install-recommends chromium" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser.sh: no apt-get here; install Debian's chromium package so that $CHROMIUM exists" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt_install() {
    ${SUDO[@]+"${SUDO[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium
}

# The package lists may be missing or stale on a fresh machine: update them when the package is not found.
if ! apt-cache show chromium >/dev/null 2>&1 || ! apt_install; then
    ${SUDO[@]+"${SUDO[@]}"} apt-get update -q
    apt_install
fi

if [ ! -x "$CHROMIUM" ]; then
    echo "install_browser.sh: chromium was installed but $CHROMIUM is not there" >&2
    exit 1
fi
"$CHROMIUM" --version 2>/dev/null || true
