#!/usr/bin/env bash
# Benchmark: UKI assembly by hermetic (`UkiBuilder`, via examples/uki.rs) against the real
# `ukify build` of systemd 257, on the same inputs (Debian's cloud kernel + a ~90 MB initrd),
# best of N runs each. Also checks that both outputs are byte-identical.
#
# The trixie tools come from the test cache: run `cargo test --test uki_ukify` once first.
# Usage: scripts/bench-uki.sh [RUNS] [INITRD_MB]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
initrd_mb=${2:-90}
target=${CARGO_TARGET_DIR:-target}

root=$(dirname "$(dirname "$(dirname "$(dirname "$(ls -d target/test-cache/trixie-v1/root-*/usr/lib/systemd/ukify | head -1)")")")")
[ -f "$root/usr/lib/systemd/ukify" ] || { echo "no ukify in target/test-cache: run cargo test --test uki_ukify first" >&2; exit 1; }
stub=$root/usr/lib/systemd/boot/efi/linuxx64.efi.stub
kernel=$(ls "$root"/boot/vmlinuz-* | head -1)
release=${kernel##*/vmlinuz-}

cargo build --release --quiet --example uki
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
head -c $((initrd_mb * 1024 * 1024 + 12345)) /dev/urandom > "$work/initrd"
printf 'console=ttyS0 root=/dev/ram0 quiet' > "$work/cmdline"
printf 'ID=bench\nVERSION_ID=1\n' > "$work/os-release"
common=(--linux="$kernel" --initrd="$work/initrd" --cmdline=@"$work/cmdline"
        --os-release=@"$work/os-release" --uname="$release" --stub="$stub")

# best_of N CMD...: prints the fastest wall time in seconds.
# best_of N COMMAND-STRING: runs it N times with bash; prints "wall cpu" (seconds) of the run
# with the least wall time (cpu = user + sys, which a busy machine does not inflate).
best_of() {
    local n=$1 cmd=$2 best="999 0"
    for _ in $(seq "$n"); do
        /usr/bin/time -f '%e %U %S' -o "$work/time" bash -c "$cmd" >/dev/null 2>&1
        best=$(awk -v b="$best" '{ split(b, o, " "); if ($1 < o[1]) print $1, $2 + $3; else print b }' "$work/time")
    done
    echo "$best"
}

ukify_cmd="PYTHONPATH=$root/usr/lib/python3/dist-packages /usr/bin/python3 $root/usr/lib/systemd/ukify build ${common[*]} --output=$work/ukify.efi"
ours_cmd="$target/release/examples/uki ${common[*]} --output=$work/ours.efi"

read -r w_ukify c_ukify < <(best_of "$runs" "$ukify_cmd")
read -r w_ours c_ours < <(best_of "$runs" "$ours_cmd")
size=$(stat -c %s "$work/ours.efi")
if cmp -s "$work/ukify.efi" "$work/ours.efi"; then same=identical; else same=DIFFERENT; fi

printf '%-36s %8s %8s\n' "UKI of $((size / 1024 / 1024)) MiB, best of $runs (s)" "wall" "cpu"
printf '%-36s %8.3f %8.3f\n' "ukify build (systemd 257)" "$w_ukify" "$c_ukify"
printf '%-36s %8.3f %8.3f\n' "hermetic UkiBuilder" "$w_ours" "$c_ours"
awk -v a="$w_ukify" -v b="$w_ours" -v c="$c_ukify" -v d="$c_ours" \
    'BEGIN { printf "%-36s %7.1fx %7.1fx\n", "speed-up", a / b, c / d }'
echo "outputs: $same"
[ "$same" = identical ]
