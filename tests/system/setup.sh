#!/bin/sh
# System packages the tests use: a PostgreSQL server (the distributed-search test starts its own
# cluster on loopback) and tmux. Idempotent: does nothing when they are installed. `make test`
# runs it before pytest; it never fails the run itself: when it cannot install (no apt, no root)
# it says so, and the PostgreSQL test then fails on CI (CI=true) or skips with that reason.
set -u

have_pg() {
    command -v pg_ctl >/dev/null 2>&1 && return 0
    ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1
}

missing=""
have_pg || missing="$missing postgresql"
command -v tmux >/dev/null 2>&1 || missing="$missing tmux"
[ -z "$missing" ] && exit 0

echo "tests/system/setup.sh: installing$missing" >&2
if ! command -v apt-get >/dev/null 2>&1; then
    echo "tests/system/setup.sh: apt-get not found; install$missing by hand" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "tests/system/setup.sh: not root and no sudo; install$missing by hand" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086 # $missing is a list of package names
$SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q $missing >/dev/null \
    || echo "tests/system/setup.sh: apt-get install$missing failed" >&2
exit 0
