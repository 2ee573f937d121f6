#!/bin/sh
# What the test suite needs from the machine beyond python3 and make, installed when missing.
# `make test` runs this first, and `.ci/run` runs `make test`: one set-up for both.
#
#   - the PostgreSQL 15 server binaries (initdb, pg_ctl, postgres): on PATH or Debian's /usr/lib/postgresql/*/bin
#   - Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver): the browser tests
#
# Missing ones are installed with apt-get, as root or through `sudo -n`; otherwise one line says what is
# missing and how to install it, and the script exits 1 (the tests would fail without them).
set -eu

missing=""
have_postgres() {
  command -v initdb >/dev/null 2>&1 && return 0
  for bin in /usr/lib/postgresql/*/bin; do [ -x "$bin/initdb" ] && return 0; done
  return 1
}
have_postgres || missing="$missing postgresql"
[ -x /usr/bin/chromium ] || missing="$missing chromium"
[ -x /usr/bin/chromedriver ] || missing="$missing chromium-driver"
[ -z "$missing" ] && exit 0

packages=${missing# }
if [ "$(id -u)" = 0 ]; then
  as_root=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root="sudo -n"
else
  echo "error: the tests need Debian's $packages, and only root can install them:" \
    "run \`sudo apt-get install -y $packages\`, then \`make test\` again" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: the tests need $packages (Debian's packages) and this machine has no apt-get:" \
    "install PostgreSQL 15's server binaries, Chromium and its chromedriver, then \`make test\` again" >&2
  exit 1
fi
echo "installing Debian's $packages for the tests (apt-get)" >&2
$as_root apt-get update -qq
# shellcheck disable=SC2086  # one word per package
DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq $packages >/dev/null
