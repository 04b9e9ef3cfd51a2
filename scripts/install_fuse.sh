#!/usr/bin/env bash
# Installs what the power-loss tests need to mount their FUSE file system
# (tests_py/powerfs.py): fusermount3, and the headers pyfuse3 builds against.
# Skipped when already installed.
set -euo pipefail
packages=(fuse3 libfuse3-dev pkg-config)
if ! dpkg -s "${packages[@]}" >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi
