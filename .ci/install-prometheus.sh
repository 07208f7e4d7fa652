#!/usr/bin/env bash
# Install the real Prometheus and Alertmanager (Debian packages) used by the
# integration tests (tests/support/promstack.py starts the binaries itself on
# 127.0.0.1; the packaged service units are never used).
#
# Idempotent: does nothing when prometheus, promtool, alertmanager and amtool
# are already on PATH; runs `apt-get update` only when the package lists are
# missing or the packages cannot be found in them.
set -euo pipefail

need=(prometheus promtool alertmanager amtool)
all_present() {
    local bin
    for bin in "${need[@]}"; do
        command -v "$bin" >/dev/null 2>&1 || return 1
    done
}
if all_present; then
    echo "install-prometheus: prometheus, promtool, alertmanager, amtool already installed"
    exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive

# Keep the postinst scripts from starting the packaged daemons (they would
# bind the default ports 9090/9093/9100 and outlive the install): a
# policy-rc.d that forbids service starts, removed again afterwards unless one
# already existed.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    created_policy=1
fi
cleanup() {
    if [[ $created_policy -eq 1 ]]; then
        $SUDO rm -f "$policy"
    fi
}
trap cleanup EXIT

if ! apt-cache show prometheus prometheus-alertmanager >/dev/null 2>&1; then
    $SUDO apt-get update
fi
$SUDO apt-get install -y --no-install-recommends prometheus prometheus-alertmanager

# Belt and braces: if a daemon was started anyway (a system with systemd, or
# an init script that ignored policy-rc.d), stop it and keep it from starting
# at boot. Only the packaged services are touched, by their unit names.
for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
    if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
        $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
    elif [[ -x /etc/init.d/$svc ]]; then
        $SUDO "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
    fi
done

# Debian ships Alertmanager as /usr/bin/prometheus-alertmanager; give it its
# upstream name too so that scripts and docs can say `alertmanager`.
if ! command -v alertmanager >/dev/null 2>&1 && command -v prometheus-alertmanager >/dev/null 2>&1; then
    $SUDO ln -sf "$(command -v prometheus-alertmanager)" /usr/local/bin/alertmanager
fi

for bin in "${need[@]}"; do
    if ! command -v "$bin" >/dev/null 2>&1; then
        echo "install-prometheus: $bin still missing after install" >&2
        exit 1
    fi
done
echo "install-prometheus: $(prometheus --version 2>&1 | head -n1)"
echo "install-prometheus: $(alertmanager --version 2>&1 | head -n1)"
