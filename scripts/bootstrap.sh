#!/usr/bin/env bash
# Install what wsinfra needs on a Debian machine (run as root, or with sudo available):
# Prometheus and Alertmanager from Debian's packages, then a Python venv with the project.
# Idempotent: a second run installs nothing. WSINFRA_BENCH=1 adds the benchmark baselines.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need_apt=()
command -v prometheus >/dev/null || need_apt+=(prometheus)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v amtool >/dev/null || need_apt+=(prometheus-alertmanager)
{ command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null; } || need_apt+=(prometheus-alertmanager)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v git >/dev/null || need_apt+=(git)
# The recorder's database: the machine's PostgreSQL (installed only when none is there).
{ command -v pg_ctlcluster >/dev/null || pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; } || need_apt+=(postgresql)
if [ "${WSINFRA_BENCH:-0}" = 1 ]; then
  command -v prometheus-blackbox-exporter >/dev/null || need_apt+=(prometheus-blackbox-exporter)
  command -v wrk >/dev/null || need_apt+=(wrk)
  command -v prometheus-postgres-exporter >/dev/null || need_apt+=(prometheus-postgres-exporter)
fi
# Containers (the compose test, run by ./wsinfra test): Podman with runc (crun refuses this
# machine's hybrid cgroups), the CNI DNS plugin (compose's service names), debootstrap (the
# base image: no registry is reachable). See ../shared/containers.md and docs/compose.md.
if [ "${WSINFRA_CONTAINERS:-0}" = 1 ]; then
  command -v podman >/dev/null || need_apt+=(podman)
  command -v runc >/dev/null || need_apt+=(runc)
  command -v debootstrap >/dev/null || need_apt+=(debootstrap)
  [ -e /usr/lib/cni/dnsname ] || need_apt+=(golang-github-containernetworking-plugin-dnsname)
fi
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys, venv, ensurepip; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  need_apt+=(python3 python3-venv)
fi

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${need_apt[*]}" >&2
  # Keep the packages' own services from starting on install: the stack runs its own
  # Prometheus and Alertmanager on other ports, and a system one would only be in the way.
  policy_created=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    policy_created=1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${need_apt[@]}" | sort -u) >/dev/null
  if [ "$policy_created" = 1 ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
fi

if [ "${WSINFRA_CONTAINERS:-0}" = 1 ] && ! grep -qs '^runtime *= *"runc"' /etc/containers/containers.conf; then
  if [ -e /etc/containers/containers.conf ]; then
    echo "bootstrap: /etc/containers/containers.conf exists without runtime = \"runc\"; containers may not start" >&2
  else
    $SUDO mkdir -p /etc/containers
    printf '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n' | $SUDO tee /etc/containers/containers.conf >/dev/null
    echo "bootstrap: wrote /etc/containers/containers.conf (runc, no default ulimits)" >&2
  fi
fi

# PostgreSQL on 127.0.0.1:5432: start the cluster if it is stopped; where it wants a password
# (Debian's default scram for TCP), give the postgres role one, kept in .run/secrets (0600).
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    ver=$(ls /etc/postgresql | sort -V | tail -n 1)
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
fi
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null \
   && ! PGCONNECT_TIMEOUT=5 psql -w -h 127.0.0.1 -U postgres -d postgres -tAc 'select 1' >/dev/null 2>&1 \
   && [ ! -s .run/secrets/postgres_password ]; then
  mkdir -p .run/secrets && chmod 700 .run/secrets
  (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' > .run/secrets/postgres_password)
  $SUDO runuser -u postgres -- psql -q -c "ALTER ROLE postgres PASSWORD '$(cat .run/secrets/postgres_password)'"
  echo "bootstrap: gave the postgres role a password, kept in .run/secrets/postgres_password" >&2
fi

# The venv is rebuilt only when pyproject.toml changes.
stamp=".venv/.wsinfra-installed"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing Python packages into .venv" >&2
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e '.[test]'
  echo "$want" > "$stamp"
fi
