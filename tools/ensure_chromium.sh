#!/usr/bin/env bash
# The one thing `make test` needs beyond Python packages: a Chromium for the Space's browser test
# (tests/space/test_space.py drives it through Playwright; no browser is downloaded).
#
# Found: $CHROMIUM when set, else `chromium` on PATH. Missing: Debian's package is installed with
# apt-get when this user can install packages (root, or sudo without a password); otherwise this
# prints one line saying what to install and fails, so the suite does not start without it.
set -uo pipefail

need() {
    echo "make test needs Chromium for the Space's browser test: $1" >&2
    exit 1
}

if [ -n "${CHROMIUM:-}" ]; then
    [ -x "$CHROMIUM" ] && exit 0
    need "CHROMIUM=$CHROMIUM is not an executable file (unset it to use \`chromium\` on PATH)."
fi
command -v chromium >/dev/null 2>&1 && exit 0

how="install Debian's package (apt-get install -y chromium) or set CHROMIUM=/path/to/chromium, then run make test again."
command -v apt-get >/dev/null 2>&1 || need "no \`chromium\` on PATH and no apt-get here; $how"
if [ "$(id -u)" = 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
    as_root=(sudo -n)
else
    need "no \`chromium\` on PATH and this user cannot install packages; $how"
fi

echo "Installing Debian's chromium for the Space's browser test (apt-get install chromium)..."
export DEBIAN_FRONTEND=noninteractive
if ! "${as_root[@]}" apt-get update -qq >/dev/null || \
   ! "${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null; then
    need "apt-get install chromium failed (see above); $how"
fi
command -v chromium >/dev/null 2>&1 || need "apt-get installed chromium but it is not on PATH; $how"
