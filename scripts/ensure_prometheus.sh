#!/usr/bin/env bash
# Makes promtool and prometheus available for tests/ops (Debian's `prometheus` package, 2.42 on Debian 12).
#
# Never fails the build: when the tools cannot be installed (not root, no apt-get, no package index) it says so
# and exits 0, and the tests that need them skip with that reason.
#
# The package's maintainer scripts would start a system Prometheus on :9090 (all interfaces). The tests never
# use it (they start their own on a free 127.0.0.1 port), so the install runs under a policy-rc.d that forbids
# starting services; if a daemon was started anyway (an init that ignores policy-rc.d), it is stopped through
# the package's own init script / unit, not by process name.
set -uo pipefail

note() { echo "ensure_prometheus: $*" >&2; }

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    note "promtool/prometheus missing and not root: not installing (tests/ops will skip;" \
        "install Debian's 'prometheus' package to run them)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    note "promtool/prometheus missing and no apt-get: not installing (tests/ops will skip)"
    exit 0
fi

policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# ensure_prometheus.sh: no service starts during this install\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    made_policy=1
fi
cleanup() {
    if [ "$made_policy" = 1 ]; then
        rm -f "$policy"
    fi
}
trap cleanup EXIT

note "installing Debian's prometheus package (promtool + prometheus server)"
if ! { apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }; then
    note "apt-get could not install prometheus: tests/ops will skip"
    exit 0
fi

# A system daemon the package may have started despite the policy: stop it (and keep it from starting at boot).
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
elif [ -x /etc/init.d/prometheus ]; then
    /etc/init.d/prometheus stop >/dev/null 2>&1 || true
fi

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    note "$(promtool --version 2>&1 | head -n 1)"
else
    note "prometheus installed but promtool/prometheus not on PATH: tests/ops will skip"
fi
exit 0
