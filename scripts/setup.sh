#!/usr/bin/env bash
# Installs what building, running and testing xok needs -- only what is missing.
set -euo pipefail

packages=()
command -v qemu-system-x86_64 >/dev/null || packages+=(qemu-system-x86)
command -v strip >/dev/null || packages+=(binutils)
command -v ip >/dev/null || packages+=(iproute2)
command -v ping >/dev/null || packages+=(iputils-ping)
command -v arping >/dev/null || packages+=(arping)
command -v nc >/dev/null || packages+=(netcat-openbsd)
command -v curl >/dev/null || packages+=(curl)
command -v ab >/dev/null || packages+=(apache2-utils)
command -v wrk >/dev/null || packages+=(wrk)
command -v tshark >/dev/null || packages+=(tshark)
command -v hping3 >/dev/null || packages+=(hping3)
command -v nmap >/dev/null || packages+=(nmap)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || packages+=(fonts-dejavu-core)
if ((${#packages[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "setup: installing ${packages[*]}"
    $sudo apt-get update -q
    # tshark asks whether non-root users may capture; the default (no) is fine.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | $sudo debconf-set-selections
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${packages[@]}"
fi

if ! rustup target list --installed | grep -qx x86_64-unknown-none; then
    echo "setup: adding the x86_64-unknown-none target"
    rustup target add x86_64-unknown-none
fi
