#!/usr/bin/env bash
# Idempotent setup on Debian 12 as root: the real peers from Debian's packages, libvirt's users
# and config (what libvirt-daemon-system's postinst would do, without systemd), a virtualenv with
# virtrio and its test tools, and the demo guest image. A second run skips what is done.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
export DEBIAN_FRONTEND=noninteractive

step() { printf '\033[1m== %s\033[0m\n' "$*"; }

# 1. Debian packages
mapfile -t pkgs < <(grep -v '^\s*#' scripts/apt-packages.txt | grep -v '^\s*$')
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "apt: installing ${missing[*]}"
  if [ "$(id -u)" != 0 ]; then echo "setup: installing Debian packages needs root" >&2; exit 1; fi
  apt-get update -q -o DPkg::Lock::Timeout=600
  apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}"
fi

# 2. libvirt without systemd: the build-time user must exist or the QEMU driver refuses to start.
if [ "$(id -u)" = 0 ]; then
  getent group kvm >/dev/null || groupadd --system kvm
  getent group libvirt >/dev/null || groupadd --system libvirt
  getent passwd libvirt-qemu >/dev/null || \
    useradd --system -g kvm -d /var/lib/libvirt -M -s /usr/sbin/nologin libvirt-qemu
  getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
  mkdir -p /var/log/libvirt/qemu /var/lib/libvirt/qemu /var/cache/libvirt/qemu /etc/libvirt
  if ! grep -q 'written by virtrio' /etc/libvirt/qemu.conf 2>/dev/null; then
    cat > /etc/libvirt/qemu.conf <<'CONF'
# written by virtrio scripts/setup.sh: QEMU runs as root with no relabelling and no private
# mount namespace (required when libvirtd runs in a container, harmless elsewhere)
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
namespaces = [ ]
CONF
  fi
fi

# 3. the virtualenv with virtrio (editable), every extra, and the test and lint tools
stamp="$VENV/.virtrio-installed"
if [ ! -x "$VENV/bin/python" ]; then
  step "venv: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || \
   [ virtrio/channels/xtransfer/_speedups.c -nt "$stamp" ] || [ hatch_build.py -nt "$stamp" ]; then
  step "pip: installing virtrio[all] with the test and lint groups"
  "$VENV/bin/python" -m pip install -q --upgrade 'pip>=25.1'
  # (the build compiles xtransport's C loops; the tests need them, so a failed compile stops here)
  VIRTRIO_REQUIRE_SPEEDUPS=1 "$VENV/bin/python" -m pip install -q -e '.[all]' --group test --group lint
  touch "$stamp"
fi

# 4. the JavaScript yamux test peer (@chainsafe/libp2p-yamux from the npm registry, pinned by
# its package-lock.json). Node.js comes with this machine image; on a Debian without it, apt
# brings nodejs and npm (not listed in apt-packages.txt: NodeSource's nodejs provides npm
# itself and conflicts with Debian's npm package).
if ! command -v npm >/dev/null; then
  step "apt: installing nodejs npm"
  apt-get update -q -o DPkg::Lock::Timeout=600
  apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 nodejs npm
fi
js_peer=tests/peers/yamux_js
if [ ! -f "$js_peer/node_modules/.virtrio-installed" ] || \
   [ "$js_peer/package-lock.json" -nt "$js_peer/node_modules/.virtrio-installed" ]; then
  step "npm: the JavaScript yamux test peer"
  npm ci --prefix "$js_peer" --no-audit --no-fund --loglevel=error
  touch "$js_peer/node_modules/.virtrio-installed"
fi

# 4b. the browser console's xterm.js (@xterm/xterm and its fit addon from the npm registry,
# pinned by web/package-lock.json), vendored into the server's static dir so the page loads
# nothing from anywhere else; web/node_modules and static/vendor are gitignored
vendor=virtrio/engine/server/static/vendor
if [ ! -f "$vendor/.virtrio-installed" ] || [ web/package-lock.json -nt "$vendor/.virtrio-installed" ]; then
  step "npm: xterm.js for the browser console"
  npm ci --prefix web --no-audit --no-fund --loglevel=error
  rm -rf "$vendor"
  mkdir -p "$vendor"
  cp web/node_modules/@xterm/xterm/lib/xterm.js web/node_modules/@xterm/xterm/css/xterm.css \
     web/node_modules/@xterm/addon-fit/lib/addon-fit.js "$vendor/"
  touch "$vendor/.virtrio-installed"
fi

# 5. the bare-metal test programs of the GDB tests (cached by source hash)
step "programs: bare-metal test programs"
"$VENV/bin/python" -m tests.peers.programs

# 6. the demo guest (cached; rebuilt only when its inputs change)
step "guest: demo image"
"$VENV/bin/python" -m virtrio guest build
