#!/usr/bin/env bash
# Benchmark: `hermetic measure` on a ~100 MB UKI against what it replaces, on the same file:
# `pesign -h` (the Authenticode digest of PCR 4) plus `systemd-measure calculate` (PCR 11) on
# the sections `objcopy` extracts. Best of N runs each.
#
# The trixie tools come from the test cache: run
# `cargo test --test uki_ukify --test measure_systemd` once first.
# Usage: scripts/bench-measure.sh [RUNS] [INITRD_MB]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
initrd_mb=${2:-88}
target=${CARGO_TARGET_DIR:-target}

find_root() { # find_root RELPATH: the cached extracted tree holding RELPATH
    local f
    f=$(ls -d target/test-cache/trixie-v1/root-*/"$1" 2>/dev/null | head -1)
    [ -n "$f" ] || { echo "no $1 in target/test-cache: run cargo test --test uki_ukify --test measure_systemd first" >&2; exit 1; }
    echo "${f%/"$1"}"
}
uroot=$(find_root usr/lib/systemd/boot/efi/linuxx64.efi.stub)
mroot=$(find_root usr/lib/systemd/systemd-measure)
lib=$mroot/usr/lib/x86_64-linux-gnu
systemd_measure=("$lib/ld-linux-x86-64.so.2" --library-path "$lib:$lib/systemd" "$mroot/usr/lib/systemd/systemd-measure")
kernel=$(ls "$uroot"/boot/vmlinuz-* | head -1)

cargo build --release --quiet --bin hermetic --example uki
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
head -c $((initrd_mb * 1024 * 1024 + 4321)) /dev/urandom > "$work/initrd"
printf 'console=ttyS0 root=/dev/ram0 quiet' > "$work/cmdline"
printf 'ID=bench\n' > "$work/os-release"
"$target/release/examples/uki" --stub="$uroot/usr/lib/systemd/boot/efi/linuxx64.efi.stub" \
    --linux="$kernel" --initrd="$work/initrd" --cmdline=@"$work/cmdline" \
    --os-release=@"$work/os-release" --uname=bench --output="$work/uki.efi"
uki=$work/uki.efi

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

sm="${systemd_measure[*]}"
extract="for s in linux osrel cmdline initrd uname sbat; do objcopy -O binary --only-section=.\$s $uki $work/sec-\$s; done"
measure_sections="$sm calculate --linux=$work/sec-linux --osrel=$work/sec-osrel --cmdline=$work/sec-cmdline --initrd=$work/sec-initrd --uname=$work/sec-uname --sbat=$work/sec-sbat --bank=sha256 --phase=: -j"
bash -c "$extract"
read -r w_pesign c_pesign < <(best_of "$runs" "pesign -h -i $uki")
read -r w_extract c_extract < <(best_of "$runs" "$extract")
read -r w_sdm c_sdm < <(best_of "$runs" "$measure_sections")
read -r w_ours256 c_ours256 < <(best_of "$runs" "$target/release/hermetic measure $uki --bank sha256 --json")
read -r w_ours c_ours < <(best_of "$runs" "$target/release/hermetic measure $uki --json")

# The two agree on what they both compute.
ours_pcr11=$("$target/release/hermetic" measure "$uki" --bank sha256 --json | grep -A1 '"11"' | grep -o '[0-9a-f]\{64\}')
sdm_pcr11=$(bash -c "$measure_sections" | grep -o '[0-9a-f]\{64\}')
[ "$ours_pcr11" = "$sdm_pcr11" ] && agree=yes || agree=NO

row() { printf '%-50s %8.3f %8.3f\n' "$1" "$2" "$3"; }
size=$(stat -c %s "$uki")
printf '%-50s %8s %8s\n' "UKI of $((size / 1024 / 1024)) MiB, best of $runs (seconds)" "wall" "cpu"
row "pesign -h (PCR 4 Authenticode, sha256)" "$w_pesign" "$c_pesign"
row "objcopy: extract 6 sections" "$w_extract" "$c_extract"
row "systemd-measure calculate (PCR 11, sha256)" "$w_sdm" "$c_sdm"
w_total=$(awk -v a="$w_pesign" -v b="$w_extract" -v c="$w_sdm" 'BEGIN { print a + b + c }')
c_total=$(awk -v a="$c_pesign" -v b="$c_extract" -v c="$c_sdm" 'BEGIN { print a + b + c }')
row "  together" "$w_total" "$c_total"
row "hermetic measure --bank sha256 (PCR 4, 9, 11)" "$w_ours256" "$c_ours256"
row "hermetic measure (sha256 + sha384, PCR 4, 9, 11)" "$w_ours" "$c_ours"
awk -v a="$w_total" -v b="$w_ours256" -v c="$c_total" -v d="$c_ours256" \
    'BEGIN { printf "%-50s %7.1fx %7.1fx\n", "speed-up (sha256 vs together)", a / b, c / d }'
echo "PCR 11 agrees with systemd-measure: $agree"
[ "$agree" = yes ]
