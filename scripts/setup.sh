#!/usr/bin/env bash
# Sets up a fresh Debian or Ubuntu machine for hermetic.
#
#   bash scripts/setup.sh           what building images needs: the sandbox's id-mapping
#                                   helper and a subordinate id range for the user who runs it
#   bash scripts/setup.sh --tests   also what the tests need: the readers our output formats
#                                   are checked against, QEMU/OVMF/swtpm, and the unprivileged
#                                   test user hermetic-ci
#
# Build tools for images come from pinned debs, never from here.
set -euo pipefail

tests=false
case "${1:-}" in
  "") ;;
  --tests) tests=true ;;
  -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
  *) echo "setup: unknown argument $1 (expected nothing or --tests)" >&2; exit 2 ;;
esac

# Building: newuidmap/newgidmap map the sandbox's subordinate ids (dpkg chowns files to them).
packages=(uidmap ca-certificates)
# Testing, on top of that:
test_packages=(
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
  # the tar writer's readdir-order test (where /dev/fuse exists)
  disorderfs fuse3
  # the Secure Boot boot test signs a UKI with OVMF's test keys
  sbsigntool openssl
  # signatures: `hermetic sign` is checked against Debian's minisign
  minisign
  # the BuilderNet persistent-setup script's loop-device test (LUKS2 on a loop device)
  cryptsetup-bin
  # shared caches: a real OCI registry (distribution 2.8, run by the test, not as a service),
  # htpasswd -B for its basic auth; openssl signs the tokens of the test's token realm
  docker-registry apache2-utils
  # Go modules pinned by go.sum (tests/sources_go.rs): the real `go` writes go.sum and builds
  golang-go
  # overlay modes: the tests clone an overlay with git under two umasks
  git
)
if $tests; then packages+=("${test_packages[@]}"); fi

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
if $tests && ! command -v qemu-img >/dev/null 2>&1; then
  echo "setup: reinstalling qemu-utils (qemu-img went missing)"
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-utils
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install Rust (stable, 1.89 or newer) with rustup first" >&2
  exit 1
fi

# Subordinate ids for the sandbox's `--subids` mapping: for the user who runs hermetic (the
# one who called sudo, else the caller) and, with --tests, for hermetic-ci, whose sandbox
# suites scripts/test.sh runs once more. Each new range starts past every range taken in
# /etc/subuid and /etc/subgid, so no two users share ids.
if [ "$(uname -s)" = Linux ]; then
  next_free() {
    cat /etc/subuid /etc/subgid 2>/dev/null \
      | awk -F: 'BEGIN { end = 100000 } NF >= 3 && $2 ~ /^[0-9]+$/ && $3 ~ /^[0-9]+$/ {
          if ($2 + $3 > end) end = $2 + $3 } END { print end }'
  }
  add_subids() { # user
    local user="$1" start end
    if grep -q "^$user:" /etc/subuid 2>/dev/null && grep -q "^$user:" /etc/subgid 2>/dev/null; then
      return
    fi
    start="$(next_free)"
    end=$(( start + 65535 ))
    echo "setup: giving $user the subordinate ids $start-$end"
    if ! grep -q "^$user:" /etc/subuid 2>/dev/null; then
      sudo_if_needed usermod --add-subuids "$start-$end" "$user"
    fi
    if ! grep -q "^$user:" /etc/subgid 2>/dev/null; then
      sudo_if_needed usermod --add-subgids "$start-$end" "$user"
    fi
  }
  # Two users sharing subordinate ids can reach each other's sandbox files: say so.
  warn_overlaps() { # file
    [ -r "$1" ] || return 0
    awk -F: -v file="$1" 'NF >= 3 { s[NR] = $2; e[NR] = $2 + $3; u[NR] = $1 }
      END { for (i in u) for (j in u) if (i < j && u[i] != u[j] && s[i] < e[j] && s[j] < e[i])
        printf "setup: warning: %s gives %s and %s overlapping ranges; hint: usermod --del-subuids/--del-subgids one of them, then run setup again\n", file, u[i], u[j] }' "$1" >&2
  }
  operator="${SUDO_USER:-$(id -un)}"
  add_subids "$operator"
  if $tests; then
    if ! id -u hermetic-ci >/dev/null 2>&1; then
      echo "setup: creating user hermetic-ci"
      sudo_if_needed useradd --create-home --shell /bin/bash hermetic-ci
    fi
    add_subids hermetic-ci
  fi
  warn_overlaps /etc/subuid
  warn_overlaps /etc/subgid
fi
