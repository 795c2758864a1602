#!/bin/sh
# All set-up on a fresh Debian bookworm machine: Debian packages (with sudo
# when not root), a virtual environment in .venv with the pinned Python
# packages, and the pinned npm tools. Safe to run again: it only installs
# what is missing.
set -eu
cd "$(dirname "$0")/.."

APT_PACKAGES="python3 python3-venv python3-dev gcc make git \
  gnu-efi qemu-system-x86 ovmf mtools dosfstools sbsigntool \
  pcscd libccid vsmartcard-vpcd opensc pcsc-tools libpcsclite-dev swig"

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

missing=""
for p in $APT_PACKAGES; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
if [ -n "$missing" ]; then
  echo "setup: installing Debian packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.ccidkit-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing Python packages into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test,uefi,host,cards,bench]'
  touch "$stamp"
fi

if [ -f uefi/package.json ]; then
  if [ ! -d uefi/node_modules ] || [ uefi/package.json -nt uefi/node_modules ]; then
    echo "setup: installing npm tools for the UEFI build"
    (cd uefi && npm ci --no-audit --no-fund --silent 2>/dev/null || npm install --no-audit --no-fund --silent)
    touch uefi/node_modules
  fi
fi
echo "setup: done"
