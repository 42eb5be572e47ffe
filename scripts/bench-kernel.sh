#!/bin/sh
# Benchmark of the kernel build (not run in CI): the full seed configuration (Debian's
# config.amd64_none_cloud-amd64 + kernel/configs/*, kernel/patches/*), built cold through
# hermetic's kernel library in the sandbox, with wall time and peak memory from
# /usr/bin/time -v; then the same tree cleaned and built again by hand with `make -j2 bzImage`
# in the same tools tree (bubblewrap, no hermetic), for comparison.
#
# Usage: scripts/bench-kernel.sh [WORKDIR]   (default: a new directory under /var/tmp)
# Needs: cargo, python3, /usr/bin/time (package `time`), bwrap (package `bubblewrap`), about 4 GB of
# disk in WORKDIR, the Debian mirror of the host's apt configuration.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d /var/tmp/hermetic-bench-kernel.XXXXXX)}
mkdir -p "$work"
work=$(cd "$work" && pwd)
jobs=${JOBS:-2}
echo "bench-kernel: work directory $work, -j$jobs"

for tool in /usr/bin/time bwrap cargo; do
  command -v "$tool" >/dev/null || { echo "bench-kernel: $tool is missing" >&2; exit 1; }
done

# 1. hermetic itself, and a project pinning the kernel's source, config and build tools.
cargo build --release --manifest-path "$repo/Cargo.toml" --bin hermetic
hermetic="$repo/target/release/hermetic"
[ -n "${CARGO_TARGET_DIR:-}" ] && hermetic="$CARGO_TARGET_DIR/release/hermetic"
project="$work/project"
store="$work/store"
mkdir -p "$project/recipes"
cp "$repo/hermetic.toml" "$project/"
cp -r "$repo/keys" "$project/"
cat > "$project/recipes/kernel-tools.toml" <<'EOF'
description = "The tools tree of the kernel build (benchmark)"
format = "directory"
packages = ["base-files"]
build-packages = [
  "bc", "bison", "cpio", "dpkg-dev", "flex", "gcc", "kmod", "libelf-dev", "libssl-dev",
  "make", "patch", "perl", "xz-utils", "zstd",
  "linux-source-6.12", "linux-config-6.12",
]

[[steps]]
name = "nothing"
script = "true"
EOF
"$hermetic" -C "$project" --store "$store" lock
"$hermetic" -C "$project" --store "$store" fetch
"$hermetic" -C "$project" --store "$store" --json build kernel-tools --output "$project/out" > "$work/tools.json"
tools=$(python3 -c 'import json,sys; print(next(s["path"] for s in json.load(open(sys.argv[1]))["steps"] if s["name"].endswith("/tools")) + "/tree")' "$work/tools.json")
blob() {
  sha=$(python3 - "$project/pins.lock" "$1" <<'PY'
import sys, tomllib
lock = tomllib.load(open(sys.argv[1], "rb"))
print(next(p["sha256"] for p in lock["packages"] if p["name"] == sys.argv[2]))
PY
)
  echo "$store/v1/blobs/sha256/$sha"
}
source_deb=$(blob linux-source-6.12)
config_deb=$(blob linux-config-6.12)
echo "bench-kernel: tools tree $tools"

# 2. A small driver calling hermetic::kernel::build_kernel (the library the build graph uses).
driver="$work/driver"
mkdir -p "$driver/src"
cat > "$driver/Cargo.toml" <<EOF
[package]
name = "bench-kernel-driver"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
hermetic = { path = "$repo" }
anyhow = "1"

[workspace]
EOF
cat > "$driver/src/main.rs" <<'EOF'
use std::path::PathBuf;
use hermetic::kernel::{BaseConfig, KernelBuild, Progress, build, build_kernel};

fn main() {
    let arg = |i: usize| PathBuf::from(std::env::args().nth(i).expect("arguments"));
    let (tools, source_deb, config_deb, kernel_dir, work) = (arg(1), arg(2), arg(3), arg(4), arg(5));
    let jobs: usize = std::env::args().nth(6).and_then(|j| j.parse().ok()).unwrap_or(2);
    let (fragments, patches, accepted) = build::project_inputs(&kernel_dir).expect("kernel/");
    let last = std::cell::Cell::new(0u64);
    let progress = |p: &Progress| {
        let s = p.elapsed.as_secs();
        if s >= last.get() + 30 {
            last.set(s);
            eprintln!("  [{s:>5}s] {} ({} lines) {}", p.step, p.lines, p.phase);
        }
    };
    let req = KernelBuild {
        tools,
        source_deb,
        base: BaseConfig::Debian { config_deb, file: build::DEBIAN_CLOUD_CONFIG.into() },
        fragments,
        accepted,
        patches,
        source_date_epoch: 0,
        log: work.join("kernel.log"),
        work_dir: work,
        jobs: Some(jobs),
        progress: &progress,
    };
    match build_kernel(&req) {
        Ok(out) => {
            println!("release {}", out.release);
            print!("{}", out.drops.render());
        }
        Err(e) => {
            eprint!("{}", hermetic::error::render_error_chain(&anyhow::Error::new(e)));
            std::process::exit(1);
        }
    }
}
EOF
CARGO_TARGET_DIR="$work/driver-target" cargo build --release --manifest-path "$driver/Cargo.toml"

# 3. Cold: unpack, patches, config, olddefconfig, drop check, bzImage.
start=$(date +%s)
/usr/bin/time -v -o "$work/time-hermetic.txt" \
  "$work/driver-target/release/bench-kernel-driver" "$tools" "$source_deb" "$config_deb" "$repo/kernel" "$work/a" "$jobs"
end=$(date +%s)
sha_a=$(sha256sum "$work/a/out/bzImage" | cut -d' ' -f1)

# 4. Again at another path: the same bzImage.
"$work/driver-target/release/bench-kernel-driver" "$tools" "$source_deb" "$config_deb" "$repo/kernel" "$work/elsewhere/b" "$jobs"
sha_b=$(sha256sum "$work/elsewhere/b/out/bzImage" | cut -d' ' -f1)

# 5. By hand on the same tree: clean (the .config stays), `make -jN bzImage` in the same tools
#    tree through bubblewrap, with the same KBUILD_* values.
in_tools() {
  bwrap --tmpfs / --ro-bind "$tools/usr" /usr --ro-bind "$tools/etc" /etc \
    --symlink usr/bin /bin --symlink usr/sbin /sbin --symlink usr/lib /lib \
    --symlink usr/lib64 /lib64 --dev /dev --proc /proc --tmpfs /tmp --dir /work \
    --bind "$work/a/build" /work/build --chdir /work/build --unshare-net --clearenv "$@"
}
in_tools --setenv PATH /usr/bin:/bin make clean >/dev/null
/usr/bin/time -v -o "$work/time-hand.txt" \
  in_tools \
  --setenv PATH /usr/bin:/bin --setenv LC_ALL C.UTF-8 \
  --setenv KBUILD_BUILD_TIMESTAMP "Fri Jun  5 15:58:00 CEST 1971" \
  --setenv KBUILD_BUILD_USER mkosi --setenv KBUILD_BUILD_HOST mkosi \
  --setenv LOCALVERSION -mkosi-cloud \
  sh -c "rm -f .version && make -j$jobs bzImage" > "$work/hand.log" 2>&1
sha_hand=$(sha256sum "$work/a/build/arch/x86/boot/bzImage" | cut -d' ' -f1)

field() { sed -n "s/^[[:space:]]*$2: //p" "$1"; }
echo
echo "== kernel build, full seed configuration, -j$jobs =="
printf '%-34s %14s %14s\n' "" "hermetic" "make by hand"
printf '%-34s %14s %14s\n' "wall clock" "$(field "$work/time-hermetic.txt" 'Elapsed (wall clock) time (h:mm:ss or m:ss)')" "$(field "$work/time-hand.txt" 'Elapsed (wall clock) time (h:mm:ss or m:ss)')"
printf '%-34s %14s %14s\n' "peak memory (max RSS, KiB)" "$(field "$work/time-hermetic.txt" 'Maximum resident set size (kbytes)')" "$(field "$work/time-hand.txt" 'Maximum resident set size (kbytes)')"
echo "hermetic cold run: $((end - start)) s (unpack, config, olddefconfig, drop check, bzImage)"
echo "bzImage at $work/a:           $sha_a"
echo "bzImage at $work/elsewhere/b: $sha_b"
echo "bzImage by hand:              $sha_hand"
echo "disk used by one build tree: $(du -sh "$work/a/build" | cut -f1)"
[ "$sha_a" = "$sha_b" ] || { echo "bench-kernel: the two builds differ" >&2; exit 1; }
