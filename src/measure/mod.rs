//! Predicting TPM PCR and TDX RTMR values of a UKI.
//!
//! The firmware and the stub measure a UKI as it boots; these functions compute the same
//! values from the file, so an attester knows them before the VM runs. Each register starts
//! at zero and is extended event by event: `PCR = H(PCR || digest)`. What is measured:
//!
//! - **PCR 4** (firmware): `EV_EFI_ACTION` "Calling EFI Application from Boot Option", the
//!   `EV_SEPARATOR` (four zero bytes), the Authenticode digest of the UKI, and, when Secure
//!   Boot is off and the stub is older than 258, the Authenticode digest of the `.linux`
//!   section (its `VirtualSize` bytes), which the stub hands to the firmware's `LoadImage`.
//! - **PCR 11** (systemd-stub): for each UKI section in the order of the stub's version,
//!   `H(name + NUL)` then `H(section as mapped)`; `.pcrsig` and empty sections are skipped.
//!   Later boot phases (`systemd-pcrphase`) extend `H(word)` for each `--phase` word.
//! - **PCR 9** (the kernel's EFI stub): `H(UTF-16LE(command line) + 00 00)` of the command
//!   line the stub passes, then `H(initrd)` of the initrd it passes: `.ucode`, `.initrd` and
//!   the cpio archives the stub generates, each padded to 4 bytes (one part: unpadded).
//!
//! [`tdx`] computes the GCP TDX registers (RTMR 1 and 2) of the same image.

pub mod cpio;
pub mod tdx;

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256, Sha384};

use crate::pe::{PeError, PeFile};

/// Errors predicting measurements.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error("cannot read the UKI {file}")]
    Pe {
        file: String,
        #[source]
        source: PeError,
    },
    #[error("cannot read the kernel (.linux section) of {file}")]
    Kernel {
        file: String,
        #[source]
        source: PeError,
    },
    #[error("{file} has no .linux section: it is not a UKI")]
    NoKernel { file: String },
    #[error(
        "cannot tell which systemd-stub {file} is built on: no \"{marker}\" in .sdmagic and no \
             stub version in MajorImageVersion\nhint: pass --stub-version with the systemd \
             version of the stub"
    )]
    UnknownStub { file: String, marker: &'static str },
    #[error(
        "{file} has a {section} section; UKIs with several profiles or automatic device tree \
             selection are not supported: their measurements depend on the hardware and the \
             boot menu"
    )]
    Unsupported { file: String, section: String },
    #[error(
        "{file} is {len} bytes long, not a multiple of 8: firmware and signing tools disagree \
             on the Authenticode digest of such files\nhint: pad the UKI with zeros to a \
             multiple of 8 bytes, or drop --strict to get the OVMF/pesign value"
    )]
    Unaligned { file: String, len: usize },
}

/// A PCR bank (the hash algorithm of the register).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Bank {
    Sha256,
    Sha384,
}

impl Bank {
    /// Both banks this module predicts.
    pub const ALL: [Bank; 2] = [Bank::Sha256, Bank::Sha384];

    /// The digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Bank::Sha256 => 32,
            Bank::Sha384 => 48,
        }
    }

    /// Hashes the concatenation of `parts`.
    pub fn hash(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut h = D::new();
            for p in parts {
                h.update(p);
            }
            h.finalize().to_vec()
        }
        match self {
            Bank::Sha256 => run::<Sha256>(parts),
            Bank::Sha384 => run::<Sha384>(parts),
        }
    }

    /// `H(register || digest)`.
    pub fn extend(self, register: &mut Vec<u8>, digest: &[u8]) {
        *register = self.hash(&[register, digest]);
    }

    /// A register's value after extending `digests` from zero.
    pub fn replay<'a>(self, digests: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
        let mut r = vec![0u8; self.digest_len()];
        for d in digests {
            self.extend(&mut r, d);
        }
        r
    }
}

impl fmt::Display for Bank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Bank::Sha256 => "sha256",
            Bank::Sha384 => "sha384",
        })
    }
}

/// The `EV_EFI_ACTION` string OVMF measures into PCR 4 before starting a boot option.
pub const CALLING_EFI_APPLICATION: &str = "Calling EFI Application from Boot Option";
/// The `EV_EFI_ACTION` string measured when a boot option returns.
pub const RETURNING_FROM_EFI_APPLICATION: &str = "Returning from EFI Application from Boot Option";
/// The `EV_SEPARATOR` event data.
pub const SEPARATOR: [u8; 4] = [0; 4];
/// What the `.sdmagic` section of systemd-stub starts with.
pub const STUB_MARKER: &str = "#### LoaderInfo: systemd-stub ";

/// The systemd version of the stub a UKI is built on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StubVersion {
    /// The major version (252, 257, ...): it decides what the stub measures and in which order.
    pub major: u32,
    /// The full version as the stub spells it (`257.13-1~deb13u1`).
    pub full: String,
}

/// Finds the stub version: from `.sdmagic` (`#### LoaderInfo: systemd-stub 257.13 ####`), else
/// from another section of the stub (not of the payload), else from the PE
/// `MajorImageVersion` (which recent stubs set to it).
pub fn detect_stub_version(pe: &PeFile<'_>) -> Option<StubVersion> {
    let parse = |text: &[u8]| -> Option<StubVersion> {
        let at = text
            .windows(STUB_MARKER.len())
            .position(|w| w == STUB_MARKER.as_bytes())?;
        let rest = &text[at + STUB_MARKER.len()..];
        let end = rest.iter().position(|&b| b == b' ' || b == 0)?;
        let full = std::str::from_utf8(&rest[..end]).ok()?.to_string();
        let major = full
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()?;
        Some(StubVersion { major, full })
    };
    if let Some(s) = pe.section(".sdmagic")
        && let Some(v) = parse(&pe.section_memory(s))
    {
        return Some(v);
    }
    // The marker in another of the stub's own sections; never in the payload, where an initrd
    // may well carry some other stub.
    const PAYLOAD: &[&str] = &[
        ".linux", ".initrd", ".ucode", ".osrel", ".cmdline", ".splash", ".dtb", ".dtbauto",
        ".hwids", ".uname", ".sbat", ".pcrsig", ".pcrpkey", ".profile",
    ];
    for s in pe
        .sections
        .iter()
        .filter(|s| !PAYLOAD.contains(&s.name().as_str()))
    {
        if let Some(v) = parse(&pe.section_memory(s)) {
            return Some(v);
        }
    }
    let major = u32::from(pe.optional.major_image_version);
    (200..1000).contains(&major).then(|| StubVersion {
        major,
        full: format!("{major}.{}", pe.optional.minor_image_version),
    })
}

/// The sections systemd-stub measures into PCR 11, in the order it measures them.
pub fn pcr11_section_order(stub_major: u32) -> &'static [&'static str] {
    match stub_major {
        ..=253 => &[
            ".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrsig", ".pcrpkey",
        ],
        254..=255 => &[
            ".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".uname", ".sbat",
            ".pcrsig", ".pcrpkey",
        ],
        256 => &[
            ".linux", ".osrel", ".cmdline", ".initrd", ".ucode", ".splash", ".dtb", ".uname",
            ".sbat", ".pcrsig", ".pcrpkey",
        ],
        _ => &[
            ".linux", ".osrel", ".cmdline", ".initrd", ".ucode", ".splash", ".dtb", ".uname",
            ".sbat", ".pcrsig", ".pcrpkey", ".profile", ".dtbauto", ".hwids",
        ],
    }
}

/// What the stub does to the embedded command line before passing it (`mangle_stub_cmdline`):
/// control characters (and DEL) become spaces, trailing ones are cut, and since 257 leading
/// ones too. Stops at the first NUL, as the stub's UTF-8 to UTF-16 conversion does.
pub fn stub_cmdline(section: &[u8], stub_major: u32) -> String {
    let end = section
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(section.len());
    let text = String::from_utf8_lossy(&section[..end]);
    let ws = |c: char| (c as u32) <= 0x20 || c as u32 == 0x7f;
    let mapped: String = text.chars().map(|c| if ws(c) { ' ' } else { c }).collect();
    let trimmed = mapped.trim_end_matches(' ');
    if stub_major >= 257 {
        trimmed.trim_start_matches(' ').to_string()
    } else {
        trimmed.to_string()
    }
}

/// The digest of the kernel's `LoadOptions` measurement: `H(UTF-16LE(cmdline) + 00 00)`.
pub fn load_options_digest(bank: Bank, cmdline: &str) -> Vec<u8> {
    let mut utf16: Vec<u8> = cmdline.encode_utf16().flat_map(u16::to_le_bytes).collect();
    utf16.extend_from_slice(&[0, 0]);
    bank.hash(&[&utf16])
}

/// The parts of the initrd the stub passes to the kernel, in order (before padding).
pub fn initrd_parts<'a>(
    pe: &PeFile<'a>,
    stub_major: u32,
) -> Vec<(String, std::borrow::Cow<'a, [u8]>)> {
    let mut parts = Vec::new();
    let section = |name: &str| pe.section(name).map(|s| pe.section_memory(s));
    if stub_major >= 256
        && let Some(d) = section(".ucode")
    {
        parts.push((".ucode".to_string(), d));
    }
    if let Some(d) = section(".initrd") {
        parts.push((".initrd".to_string(), d));
    }
    let mut generated = vec![
        (".pcrsig", "tpm2-pcr-signature.json"),
        (".pcrpkey", "tpm2-pcr-public-key.pem"),
    ];
    if stub_major >= 257 {
        generated.push((".osrel", "os-release"));
        generated.push((".profile", "profile"));
    }
    for (sec, file) in generated {
        if let Some(d) = section(sec) {
            parts.push((
                format!("cpio /.extra/{file}"),
                std::borrow::Cow::Owned(cpio::stub_extra_cpio(file, &d)),
            ));
        }
    }
    parts.retain(|(_, d)| !d.is_empty());
    parts
}

/// The sections systemd-stub measures into PCR 11, in order, with their data: those of
/// [`pcr11_section_order`] that exist, except `.pcrsig` and those with `VirtualSize` 0.
/// `lookup` gives a section's `VirtualSize` and mapped bytes.
pub fn pcr11_sections<'a>(
    lookup: impl Fn(&str) -> Option<(u32, std::borrow::Cow<'a, [u8]>)>,
    stub_major: u32,
) -> Vec<(&'static str, std::borrow::Cow<'a, [u8]>)> {
    pcr11_section_order(stub_major)
        .iter()
        .filter(|&&name| name != ".pcrsig")
        .filter_map(|&name| {
            let (vs, data) = lookup(name)?;
            (vs != 0).then_some((name, data))
        })
        .collect()
}

/// PCR 11 after the stub measured `sections` (name, bytes) and `phases` were extended.
pub fn pcr11_of_sections(
    bank: Bank,
    sections: &[(&str, &[u8])],
    stub_major: u32,
    phases: &[&str],
) -> Vec<u8> {
    let measured = pcr11_sections(
        |name| {
            sections
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, d)| (d.len() as u32, std::borrow::Cow::Borrowed(*d)))
        },
        stub_major,
    );
    let mut digests = Vec::new();
    for (name, data) in &measured {
        digests.push(bank.hash(&[name.as_bytes(), &[0]]));
        digests.push(bank.hash(&[data]));
    }
    for p in phases {
        digests.push(bank.hash(&[p.as_bytes()]));
    }
    bank.replay(digests.iter().map(Vec::as_slice))
}

/// PCR 4 after OVMF's "Calling" action, the separator, and the Authenticode digests of the
/// images started (the UKI, then `.linux` when Secure Boot is off).
pub fn pcr4_from_images(bank: Bank, image_digests: &[&[u8]]) -> Vec<u8> {
    let mut digests = vec![
        bank.hash(&[CALLING_EFI_APPLICATION.as_bytes()]),
        bank.hash(&[&SEPARATOR]),
    ];
    digests.extend(image_digests.iter().map(|d| d.to_vec()));
    bank.replay(digests.iter().map(Vec::as_slice))
}

/// How the firmware was configured for the boot being predicted.
#[derive(Debug, Clone)]
pub struct Options {
    /// Secure Boot on: the stub then does not have the firmware measure `.linux` into PCR 4.
    pub secure_boot: bool,
    /// Banks to compute.
    pub banks: Vec<Bank>,
    /// The stub's major version, when it cannot be read from the file.
    pub stub_version: Option<u32>,
    /// `systemd-pcrphase` words extended into PCR 11 after the stub's measurements.
    pub phases: Vec<String>,
    /// Refuse files whose length is not a multiple of 8 instead of warning.
    pub strict: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            secure_boot: false,
            banks: Bank::ALL.to_vec(),
            stub_version: None,
            phases: Vec::new(),
            strict: false,
        }
    }
}

/// One measurement event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub pcr: u32,
    /// The event type and what was measured, for people.
    pub description: String,
    /// The digest in each computed bank.
    pub digests: BTreeMap<Bank, Vec<u8>>,
}

/// The predicted registers of one UKI.
#[derive(Debug, Clone)]
pub struct Prediction {
    pub file: String,
    pub stub: StubVersion,
    pub secure_boot: bool,
    /// Events in the order they are extended (grouped by PCR).
    pub events: Vec<Event>,
    /// Final values: PCR index -> bank -> value.
    pub pcrs: BTreeMap<u32, BTreeMap<Bank, Vec<u8>>>,
    /// Things an attester should know (e.g. lengths not multiple of 8).
    pub warnings: Vec<String>,
}

/// What one event digest is computed from; all are computed in parallel.
enum Source<'a> {
    /// Fixed bytes (action strings, separators, section names, small sections).
    Bytes(std::borrow::Cow<'a, [u8]>),
    /// Authenticode digest of a PE image.
    Authenticode(&'a PeFile<'a>),
    /// Parts hashed one after the other, each padded with zeros to 4 bytes (the initrd the
    /// stub assembles), without copying them together.
    Padded(Vec<std::borrow::Cow<'a, [u8]>>),
}

fn compute(source: &Source<'_>, bank: Bank) -> Vec<u8> {
    match source {
        Source::Bytes(b) => bank.hash(&[b]),
        Source::Padded(parts) => {
            let mut v: Vec<&[u8]> = Vec::with_capacity(parts.len() * 2);
            for p in parts {
                v.push(p);
                v.push(&[0u8; 3][..(4 - p.len() % 4) % 4]);
            }
            bank.hash(&v)
        }
        Source::Authenticode(pe) => {
            let ranges = pe
                .authenticode_ranges()
                .expect("ranges were checked before");
            match bank {
                Bank::Sha256 => crate::pe::hash_ranges::<Sha256>(pe.data(), &ranges),
                Bank::Sha384 => crate::pe::hash_ranges::<Sha384>(pe.data(), &ranges),
            }
        }
    }
}

/// Digests of the first part of `source` alone and of all of it, in one pass.
fn compute_with_prefix(source: &Source<'_>, bank: Bank) -> Vec<Vec<u8>> {
    fn run<D: Digest + Clone>(source: &Source<'_>) -> Vec<Vec<u8>> {
        let parts: Vec<&[u8]> = match source {
            Source::Bytes(d) => vec![d.as_ref()],
            Source::Padded(parts) => parts.iter().map(|p| p.as_ref()).collect(),
            Source::Authenticode(_) => unreachable!("not a concatenation"),
        };
        let padded = matches!(source, Source::Padded(_));
        let mut h = D::new();
        let mut prefix = None;
        for p in parts {
            h.update(p);
            if prefix.is_none() {
                prefix = Some(h.clone().finalize().to_vec());
            }
            if padded {
                h.update(&[0u8; 3][..(4 - p.len() % 4) % 4]);
            }
        }
        vec![prefix.expect("one part at least"), h.finalize().to_vec()]
    }
    match bank {
        Bank::Sha256 => run::<Sha256>(source),
        Bank::Sha384 => run::<Sha384>(source),
    }
}

/// Computes `jobs` on all cores, largest first; results in input order.
fn parallel<T: Send, F: Fn(usize) -> T + Sync>(n: usize, cost: &[usize], f: F) -> Vec<T> {
    let threads = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .min(n.max(1));
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(cost[i]));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<T>>> =
        (0..n).map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&i) = order.get(k) else { break };
                    let v = f(i);
                    *results[i].lock().expect("no panics while holding") = Some(v);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|m| m.into_inner().expect("lock").expect("computed"))
        .collect()
}

/// Predicts PCR 4, 9 and 11 of a UKI booted by OVMF-like firmware.
pub fn predict(uki: &[u8], file: &str, opts: &Options) -> Result<Prediction, MeasureError> {
    let pe = PeFile::parse(uki, file).map_err(|source| MeasureError::Pe {
        file: file.to_string(),
        source,
    })?;
    pe.authenticode_ranges()
        .map_err(|source| MeasureError::Pe {
            file: file.to_string(),
            source,
        })?;
    let stub = match opts.stub_version {
        Some(major) => StubVersion {
            major,
            full: format!("{major} (given)"),
        },
        None => detect_stub_version(&pe).ok_or_else(|| MeasureError::UnknownStub {
            file: file.to_string(),
            marker: STUB_MARKER,
        })?,
    };
    for s in [".profile", ".dtbauto"] {
        if pe.section(s).is_some() {
            return Err(MeasureError::Unsupported {
                file: file.to_string(),
                section: s.to_string(),
            });
        }
    }
    let linux_section = pe.section(".linux").ok_or_else(|| MeasureError::NoKernel {
        file: file.to_string(),
    })?;
    let linux_bytes = pe.section_memory(linux_section);
    let kernel_name = format!("{file} (.linux)");
    let kernel = PeFile::parse(&linux_bytes, kernel_name.clone()).map_err(|source| {
        MeasureError::Kernel {
            file: file.to_string(),
            source,
        }
    })?;
    kernel
        .authenticode_ranges()
        .map_err(|source| MeasureError::Kernel {
            file: file.to_string(),
            source,
        })?;

    let mut warnings = Vec::new();
    for (what, len) in [(file, uki.len()), (kernel_name.as_str(), linux_bytes.len())] {
        if len % 8 != 0 {
            if opts.strict {
                return Err(MeasureError::Unaligned {
                    file: what.to_string(),
                    len,
                });
            }
            warnings.push(format!(
                "{what} is {len} bytes, not a multiple of 8: OVMF and pesign (used here) \
                 disagree with osslsigncode and go-uefi on its Authenticode digest"
            ));
        }
    }

    // The events, as (pcr, description, source).
    let mut plan: Vec<(u32, String, Source<'_>)> = Vec::new();
    let bytes = |b: &[u8]| Source::Bytes(std::borrow::Cow::Owned(b.to_vec()));
    plan.push((
        4,
        format!("EV_EFI_ACTION \"{CALLING_EFI_APPLICATION}\""),
        bytes(CALLING_EFI_APPLICATION.as_bytes()),
    ));
    plan.push((4, "EV_SEPARATOR".into(), bytes(&SEPARATOR)));
    plan.push((
        4,
        format!("EV_EFI_BOOT_SERVICES_APPLICATION {file} (Authenticode)"),
        Source::Authenticode(&pe),
    ));
    if !opts.secure_boot && stub.major < 258 {
        plan.push((
            4,
            "EV_EFI_BOOT_SERVICES_APPLICATION .linux (Authenticode, Secure Boot off)".into(),
            Source::Authenticode(&kernel),
        ));
    }

    let sections = pcr11_sections(
        |name| {
            pe.section(name)
                .map(|s| (s.virtual_size, pe.section_memory(s)))
        },
        stub.major,
    );
    for (name, data) in sections {
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        plan.push((11, format!("EV_IPL section name {name}"), bytes(&n)));
        plan.push((
            11,
            format!("EV_IPL section {name} ({} bytes)", data.len()),
            Source::Bytes(data),
        ));
    }
    for phase in &opts.phases {
        plan.push((
            11,
            format!("EV_IPL phase \"{phase}\""),
            bytes(phase.as_bytes()),
        ));
    }

    if let Some(s) = pe.section(".cmdline") {
        let cmdline = stub_cmdline(&pe.section_memory(s), stub.major);
        let mut utf16: Vec<u8> = cmdline.encode_utf16().flat_map(u16::to_le_bytes).collect();
        utf16.extend_from_slice(&[0, 0]);
        plan.push((
            9,
            format!("EV_EVENT_TAG 0x8F3B22ED LoadOptions \"{cmdline}\""),
            Source::Bytes(std::borrow::Cow::Owned(utf16)),
        ));
    } else {
        warnings.push(
            "the UKI has no .cmdline: the command line (PCR 9) comes from the boot entry and \
             is not predicted"
                .into(),
        );
    }
    let parts = initrd_parts(&pe, stub.major);
    if !parts.is_empty() {
        let names: Vec<String> = parts.iter().map(|(n, _)| n.clone()).collect();
        let (len, source) = if parts.len() == 1 {
            let one = parts.into_iter().next().expect("one").1;
            (one.len(), Source::Bytes(one))
        } else {
            let len = parts.iter().map(|(_, d)| d.len().next_multiple_of(4)).sum();
            (
                len,
                Source::Padded(parts.into_iter().map(|(_, d)| d).collect()),
            )
        };
        plan.push((
            9,
            format!(
                "EV_EVENT_TAG 0x8F3B22EC initrd ({len} bytes: {})",
                names.join(" + ")
            ),
            source,
        ));
    }

    // Compute every (event, bank) digest in parallel. The kernel's initrd usually starts with
    // the bytes of `.initrd`, which PCR 11 hashes too: one pass gives both digests.
    let size = |src: &Source<'_>| match src {
        Source::Bytes(d) => d.len(),
        Source::Authenticode(p) => p.data().len(),
        Source::Padded(parts) => parts.iter().map(|p| p.len()).sum(),
    };
    let mut groups: Vec<Vec<usize>> = (0..plan.len()).map(|i| vec![i]).collect();
    let pcr11_initrd = plan
        .iter()
        .position(|(pcr, d, _)| *pcr == 11 && d.starts_with("EV_IPL section .initrd "));
    let pcr9_initrd = plan
        .iter()
        .position(|(pcr, d, _)| *pcr == 9 && d.starts_with("EV_EVENT_TAG 0x8F3B22EC"));
    if let (Some(a), Some(b)) = (pcr11_initrd, pcr9_initrd)
        && let Source::Bytes(prefix) = &plan[a].2
    {
        let first = match &plan[b].2 {
            Source::Bytes(d) => Some(d.as_ref()),
            Source::Padded(parts) => parts.first().map(|p| p.as_ref()),
            Source::Authenticode(_) => None,
        };
        if first.is_some_and(|f| std::ptr::eq(f, prefix.as_ref())) {
            groups[a] = vec![a, b];
            groups[b].clear();
        }
    }
    let jobs: Vec<(&[usize], Bank)> = groups
        .iter()
        .filter(|g| !g.is_empty())
        .flat_map(|g| opts.banks.iter().map(move |&b| (g.as_slice(), b)))
        .collect();
    let cost: Vec<usize> = jobs
        .iter()
        .map(|&(g, b)| {
            let n = size(&plan[*g.last().expect("non-empty")].2);
            // SHA-384 is slower than SHA-256 with SHA-NI.
            if b == Bank::Sha384 { n * 2 } else { n }
        })
        .collect();
    let digests = parallel(jobs.len(), &cost, |k| {
        let (group, bank) = jobs[k];
        match group {
            [one] => vec![compute(&plan[*one].2, bank)],
            [_prefix, whole] => compute_with_prefix(&plan[*whole].2, bank),
            _ => unreachable!("groups have one or two events"),
        }
        .into_iter()
        .zip(group.iter().copied())
        .map(|(d, i)| (i, d))
        .collect::<Vec<_>>()
    });

    let mut events: Vec<Event> = plan
        .iter()
        .map(|(pcr, d, _)| Event {
            pcr: *pcr,
            description: d.clone(),
            digests: BTreeMap::new(),
        })
        .collect();
    for (&(_, bank), group) in jobs.iter().zip(digests) {
        for (i, d) in group {
            events[i].digests.insert(bank, d);
        }
    }
    let mut pcrs: BTreeMap<u32, BTreeMap<Bank, Vec<u8>>> = BTreeMap::new();
    for e in &events {
        for (&bank, d) in &e.digests {
            let reg = pcrs
                .entry(e.pcr)
                .or_default()
                .entry(bank)
                .or_insert_with(|| vec![0; bank.digest_len()]);
            bank.extend(reg, d);
        }
    }
    Ok(Prediction {
        file: file.to_string(),
        stub,
        secure_boot: opts.secure_boot,
        events,
        pcrs,
        warnings,
    })
}

impl Prediction {
    /// The value of `pcr` in `bank`, if predicted.
    pub fn value(&self, pcr: u32, bank: Bank) -> Option<&[u8]> {
        self.pcrs.get(&pcr)?.get(&bank).map(Vec::as_slice)
    }

    /// measured-boot's JSON shape: `{"measurements":{"4":{"expected":"hex"},...}}`.
    pub fn measured_boot_json(&self, bank: Bank) -> serde_json::Value {
        serde_json::json!({ "measurements": self.expected(bank) })
    }

    /// `{"4":{"expected":"hex"},...}` for one bank.
    pub fn expected(&self, bank: Bank) -> serde_json::Map<String, serde_json::Value> {
        self.pcrs
            .iter()
            .filter_map(|(pcr, banks)| {
                let v = banks.get(&bank)?;
                Some((
                    pcr.to_string(),
                    serde_json::json!({ "expected": hex::encode(v) }),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
