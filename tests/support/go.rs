//! Go modules a test packs itself and serves as a GOPROXY, and a program using them
//! (tests/sources_go.rs, tests/go_live.rs).

use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use hermetic::sources::gomod::escape_path;

pub const GO: &str = "/usr/bin/go";

/// A module the test packs: `(module, version, go.mod, files)`.
pub type Packed = (
    &'static str,
    &'static str,
    String,
    Vec<(&'static str, &'static str)>,
);

/// The modules the test packs. `example.com/Upper/caps` has upper case letters (escaped
/// `!u` by the proxy protocol); `greet` needs `strutil`.
pub fn packed_modules() -> Vec<Packed> {
    vec![
        (
            "example.com/greet",
            "v1.0.0",
            "module example.com/greet\n\ngo 1.19\n\nrequire example.com/strutil v0.3.0\n".into(),
            vec![(
                "greet.go",
                "package greet\n\nimport \"example.com/strutil\"\n\n// Hello greets.\nfunc Hello(n string) string { return \"hello, \" + strutil.Reverse(strutil.Reverse(n)) }\n",
            )],
        ),
        (
            "example.com/strutil",
            "v0.3.0",
            "module example.com/strutil\n\ngo 1.19\n".into(),
            vec![
                (
                    "reverse.go",
                    "package strutil\n\n// Reverse reverses s by runes.\nfunc Reverse(s string) string {\n\tr := []rune(s)\n\tfor i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {\n\t\tr[i], r[j] = r[j], r[i]\n\t}\n\treturn string(r)\n}\n",
                ),
                ("LICENSE", "Public domain.\n"),
            ],
        ),
        (
            "example.com/Upper/caps",
            "v1.2.0",
            "module example.com/Upper/caps\n\ngo 1.19\n".into(),
            vec![(
                "caps.go",
                "package caps\n\nimport \"strings\"\n\n// Shout upper-cases s.\nfunc Shout(s string) string { return strings.ToUpper(s) + \"!\" }\n",
            )],
        ),
    ]
}

/// A module zip as the proxy protocol serves it: every file under `<module>@<version>/`.
pub fn pack_zip(module: &str, version: &str, go_mod: &str, files: &[(&str, &str)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let mut all = vec![("go.mod", go_mod)];
    all.extend(files.iter().copied());
    for (name, body) in all {
        w.start_file(format!("{module}@{version}/{name}"), opts)
            .unwrap();
        w.write_all(body.as_bytes()).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// Writes the GOPROXY tree: `<escaped module>/@v/{list,<v>.info,<v>.mod,<v>.zip}`.
pub fn write_proxy(root: &Path) {
    for (module, version, go_mod, files) in packed_modules() {
        let dir = root.join(escape_path(module)).join("@v");
        fs_err::create_dir_all(&dir).unwrap();
        fs_err::write(dir.join("list"), format!("{version}\n")).unwrap();
        fs_err::write(
            dir.join(format!("{version}.info")),
            format!("{{\"Version\":\"{version}\",\"Time\":\"2024-01-01T00:00:00Z\"}}"),
        )
        .unwrap();
        fs_err::write(dir.join(format!("{version}.mod")), &go_mod).unwrap();
        fs_err::write(
            dir.join(format!("{version}.zip")),
            pack_zip(module, version, &go_mod, &files),
        )
        .unwrap();
    }
    // go percent-encodes the `!` of escaped paths (`%21upper`), hermetic does not (both are
    // the same URL to a real server); the test's file server does not decode, so it gets
    // the other spelling too.
    std::os::unix::fs::symlink("!upper", root.join("example.com/%21upper")).unwrap();
}

/// The program: imports `greet` and `caps`; `strutil` comes in through `greet`.
pub fn write_program(dir: &Path) {
    fs_err::create_dir_all(dir).unwrap();
    fs_err::write(
        dir.join("go.mod"),
        "module example.com/hello\n\ngo 1.19\n\nrequire (\n\texample.com/Upper/caps v1.2.0\n\texample.com/greet v1.0.0\n)\n",
    )
    .unwrap();
    fs_err::write(
        dir.join("main.go"),
        "package main\n\nimport (\n\t\"fmt\"\n\n\t\"example.com/Upper/caps\"\n\t\"example.com/greet\"\n)\n\nfunc main() { fmt.Println(greet.Hello(\"world\"), caps.Shout(\"go\")) }\n",
    )
    .unwrap();
}

/// Runs the host's `go` in `dir` against the proxy, with every go directory in `scratch`.
pub fn host_go(dir: &Path, scratch: &Path, proxy: &str, args: &[&str]) {
    let out = Command::new(GO)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", scratch)
        .env("GOPATH", scratch.join("gopath"))
        .env("GOMODCACHE", scratch.join("modcache"))
        .env("GOCACHE", scratch.join("cache"))
        .env("GOPROXY", proxy)
        .env("GOSUMDB", "off")
        .env("GOENV", "off")
        .env("GOFLAGS", "-modcacherw")
        .env("CGO_ENABLED", "0")
        .output()
        .expect("run go");
    assert!(
        out.status.success(),
        "go {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tar.gz of the directory `dir` with every path under `prefix`.
pub fn tar_gz_of(dir: &Path, prefix: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(prefix.trim_end_matches('/'), dir).unwrap();
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(&b.into_inner().unwrap()).unwrap();
    e.finish().unwrap()
}
