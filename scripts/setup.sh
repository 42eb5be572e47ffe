#!/usr/bin/env bash
# Installs what hermetic's tests and cross-checks need on a fresh Debian or Ubuntu machine.
# Build tools for images come from pinned debs, never from here: these are only the
# readers the tests check our output formats against, and the sandbox's id-mapping helper.
set -euo pipefail

packages=(
  # the sandbox: subordinate id mapping (newuidmap/newgidmap), bwrap and hyperfine for the
  # benchmark, python3 for the probes of the escape suite
  hyperfine
  uidmap bubblewrap python3
  # the synthetic signed test archive
  gpg gpgv xz-utils dpkg-dev
  # readers our image writers are checked against
  cpio libarchive-tools zstd mtools dosfstools gdisk fdisk qemu-utils binutils pesign
  # booting images and checking measurements
  qemu-system-x86 ovmf swtpm swtpm-tools tpm2-tools
  # the benchmark of fetch against apt
  apt-utils curl
  # the kernel module's unit tests use GNU patch as their oracle; time for bench-kernel.sh
  patch time
  # the Secure Boot boot test signs a UKI with OVMF's test keys
  sbsigntool openssl
  # signatures: `hermetic sign` is checked against Debian's minisign
  minisign
)

sudo_if_needed() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Installing qemu-system-x86 from the host's archive can remove a newer qemu-utils from another
# source (seen with a backport); the tests need qemu-img, so make sure some qemu-utils remains.
if ! command -v qemu-img >/dev/null 2>&1; then
  echo "setup: reinstalling qemu-utils (qemu-img went missing)"
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-utils
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust (stable, 1.89 or newer) with rustup first" >&2
  exit 1
fi

# The sandbox suite also runs as an ordinary user (scripts/test.sh): create `hermetic-ci`, and
# give it and root subordinate id ranges for the sandbox's `--subids` mapping (dpkg chowns).
if [ "$(uname -s)" = Linux ]; then
  if ! id -u hermetic-ci >/dev/null 2>&1; then
    echo "setup: creating user hermetic-ci"
    sudo_if_needed useradd --create-home --shell /bin/bash hermetic-ci
  fi
  add_subids() { # user start
    local user="$1" start="$2" end=$(( $2 + 65535 ))
    if ! grep -q "^$user:" /etc/subuid 2>/dev/null; then
      sudo_if_needed usermod --add-subuids "$start-$end" "$user"
    fi
    if ! grep -q "^$user:" /etc/subgid 2>/dev/null; then
      sudo_if_needed usermod --add-subgids "$start-$end" "$user"
    fi
  }
  add_subids root 100000
  add_subids hermetic-ci 165536
fi
