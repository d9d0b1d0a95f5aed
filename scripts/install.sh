#!/bin/sh
# Install what berth needs on a fresh Debian 12 machine (as root): system packages,
# then a virtualenv at .venv with berth and its test tools. Safe to run again.
set -eu
cd "$(dirname "$0")/.."
PKGS="etcd-server runc conmon iptables nftables iproute2 busybox-static iperf3 dnsutils curl openssl procps util-linux python3-venv python3-dev gcc
  debootstrap debian-archive-keyring e2fsprogs qemu-system-x86 qemu-utils openssh-client tcpdump
  systemd-container vagrant vagrant-libvirt libvirt-daemon-system libvirt-clients dnsmasq-base"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "installing:$missing"
  apt-get update -qq
  # No package may start a service here: libvirt's would bring up its default network,
  # with NAT rules, in this machine's own namespace (berth runs libvirtd only inside a
  # namespace of its own: scripts/vagrant-test.sh). Debian's policy-rc.d hook says no.
  guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    guard=yes
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  if [ -n "$guard" ]; then rm -f /usr/sbin/policy-rc.d; fi
fi
# Debian's etcd-server package may start a system etcd; berth starts its own on its own ports.
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
