//! Helpers shared by the `image_*` integration tests: running the real readers, golden
//! files, and building test trees.
#![allow(dead_code)] // each test crate uses a different subset

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs a command, panics with its output unless it succeeds, returns its stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?}: {e} (is it installed? see scripts/setup.sh)")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a shell command line.
pub fn sh(script: &str) -> String {
    run(Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(script))
}

/// A text rendering of `bytes` that is exact yet small when most of it is zero: the length,
/// then every 16-byte line that is not all zero, as offset, hex and ASCII.
pub fn sparse_hexdump(bytes: &[u8]) -> String {
    let mut out = format!("length {}\n", bytes.len());
    for (i, line) in bytes.chunks(16).enumerate() {
        if line.iter().all(|&b| b == 0) {
            continue;
        }
        let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String = line
            .iter()
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!(
            "{:08x}: {:<47} |{}|\n",
            i * 16,
            hex.join(" "),
            ascii
        ));
    }
    out
}

/// Same as [`sparse_hexdump`] for a (possibly large, sparse) file, read in chunks.
pub fn sparse_hexdump_file(path: &Path) -> String {
    use std::io::Read;
    let mut f = fs_err::File::open(path).unwrap();
    let len = f.metadata().unwrap().len();
    let mut out = format!("length {len}\n");
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0usize;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = f.read(&mut buf[filled..]).unwrap();
            if n == 0 {
                break;
            }
            filled += n;
        }
        let dump = sparse_hexdump(&buf[..filled]);
        for line in dump.lines().skip(1) {
            let (off, rest) = line.split_once(':').unwrap();
            let off = usize::from_str_radix(off, 16).unwrap() + offset;
            out.push_str(&format!("{off:08x}:{rest}\n"));
        }
        offset += filled;
        if filled < buf.len() {
            return out;
        }
    }
}

/// Compares `actual` with the golden file `tests/golden/image/<name>`, or rewrites the golden
/// file when `HERMETIC_REGENERATE_GOLDEN=1`.
pub fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/image")
        .join(name);
    if std::env::var("HERMETIC_REGENERATE_GOLDEN").as_deref() == Ok("1") {
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(&path, actual).unwrap();
        return;
    }
    let expected = fs_err::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{e}\nrun with HERMETIC_REGENERATE_GOLDEN=1 to create it, then review the diff")
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the output, first at line {}:\n  golden: {:?}\n  actual: {:?}\nrun with HERMETIC_REGENERATE_GOLDEN=1 to accept the change, then review the diff",
            path.display(),
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> String {
    hermetic::hash::sha256_file(path).unwrap()
}

/// Deterministic pseudo-random bytes (xorshift), so test inputs are the same everywhere.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Writes `data` at `offset` of `path` (which must exist), leaving other bytes alone.
pub fn write_at(path: &Path, offset: u64, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = fs_err::OpenOptions::new().write(true).open(path).unwrap();
    f.file().write_all_at(data, offset).unwrap();
}

/// Creates a sparse file of `size` bytes.
pub fn sparse_file(path: &Path, size: u64) {
    let f = fs_err::File::create(path).unwrap();
    f.set_len(size).unwrap();
}
