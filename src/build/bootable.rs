//! The bootable formats of an image: `initrd`, `uki`, and the `gcp`, `azure` and `qemu` disk
//! images around the UKI, laid out as the seed images are (../shared reference: fixed disk and
//! ESP GUIDs, FAT volume serial, sizes, names).
//!
//! The whole image tree becomes the initrd (the images run from memory, `/init` is systemd);
//! the kernel — the one the `kernel` step built from source when the recipe has a `[kernel]`
//! table, otherwise the one a package installed in `/boot`, taken out of the tree by the image
//! step — becomes `.linux`; the stub
//! is the tree's own `linuxx64.efi.stub` (from the pinned `systemd-boot-efi`), the `.osrel`
//! its own `/usr/lib/os-release`.
//!
//! Every file taken from the tree or a step's store entry is read with [`crate::beneath`]:
//! never through a symbolic link, so a step cannot put a host file (`usr/lib/os-release` →
//! `/root/secret`) into the image.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::image::disk::{self, EspDiskLayout};
use crate::image::gpt::Guid;
use crate::image::{cpio, gcp, qcow2, uki, vhd};
use crate::recipe::OutputFormat;

use super::BuildError;

/// Where the image step puts the kernel it takes out of `/boot` (in its store entry), when the
/// recipe builds none.
pub const KERNEL_DIR: &str = "kernel";

/// The seed's `Seed=` of buildernet.conf: the VHD's unique id is derived from it.
pub const SEED: &str = "630b5f72-a36a-4e83-b23d-6ef47c82fd9c";

/// The zstd level of the initrd: zstd's own default, as mkosi uses it. Level 19 makes the
/// initrd about a fifth smaller and its compression ten times slower; the image lives in
/// memory either way.
pub const INITRD_ZSTD_LEVEL: i32 = 3;

/// The seed's kernel command lines.
pub fn default_cmdline(format: OutputFormat) -> &'static str {
    match format {
        OutputFormat::Gcp => "console=ttyS0,115200n8 systemd.firstboot=no swiotlb=1048576",
        _ => "console=ttyS0,115200n8 systemd.firstboot=no",
    }
}

/// Whether a format needs a kernel and an initrd.
pub fn is_bootable(format: OutputFormat) -> bool {
    matches!(
        format,
        OutputFormat::Initrd
            | OutputFormat::Uki
            | OutputFormat::Gcp
            | OutputFormat::Azure
            | OutputFormat::Qemu
    )
}

/// The shell script the image step runs (in the image tree, before the clean-up) for a
/// bootable format whose recipe builds its kernel: `/init` → systemd; a kernel some package
/// put in `/boot` is an error (which of the two would boot?).
pub const PREPARE_SCRIPT_BUILT_KERNEL: &str = r#"set -eu
ln -sfn usr/lib/systemd/systemd /init
for k in /boot/vmlinuz-*; do
  if [ -e "$k" ]; then
    echo "the recipe builds its kernel ([kernel]) but a package installed $k: remove the kernel package (e.g. linux-image-cloud-amd64) from the packages" >&2
    exit 1
  fi
done
"#;

/// The shell script the image step runs (in the image tree, before the clean-up) for a
/// bootable format whose kernel comes from a package: `/init` → systemd, and the kernel moved
/// out of `/boot` into `/.hermetic-kernel` (mounted from the step's store entry), with
/// Debian's own initrd of it removed: the whole tree is the initrd.
pub const PREPARE_SCRIPT: &str = r#"set -eu
ln -sfn usr/lib/systemd/systemd /init
set -- /boot/vmlinuz-*
if [ ! -e "$1" ]; then
  echo "no kernel in /boot: a bootable image needs a [kernel] table or a kernel package (e.g. linux-image-cloud-amd64)" >&2
  exit 1
fi
if [ "$#" -ne 1 ]; then echo "more than one kernel in /boot: $*" >&2; exit 1; fi
cp "$1" /.hermetic-kernel/
rm -f /boot/vmlinuz-* /boot/initrd.img-* /boot/System.map-* /boot/config-* /vmlinuz /vmlinuz.old /initrd.img /initrd.img.old
"#;

/// The files of a `kernel` step's store entry (under `files/`).
pub const KERNEL_BZIMAGE: &str = "bzImage";
pub const KERNEL_VMLINUX: &str = "vmlinux";
pub const KERNEL_CONFIG: &str = "config";
pub const KERNEL_RELEASE: &str = "kernelrelease";
/// The options that did not survive `make olddefconfig`, all accepted, with the reasons.
pub const KERNEL_DROPS: &str = "dropped-options";

/// The kernel a `kernel` step built (its `files/` directory), and its release.
pub fn built_kernel(files: &Path) -> Result<(PathBuf, String), BuildError> {
    let release = crate::beneath::read_to_string(files, KERNEL_RELEASE)?
        .trim()
        .to_string();
    Ok((files.join(KERNEL_BZIMAGE), release))
}

/// Where the image's systemd stub is in its tree.
pub const STUB: &str = "usr/lib/systemd/boot/efi/linuxx64.efi.stub";
/// Where the image's os-release is in its tree.
pub const OS_RELEASE: &str = "usr/lib/os-release";

/// What [`write`] writes from.
#[derive(Debug, Clone)]
pub struct BootableInputs<'a> {
    pub format: OutputFormat,
    /// The image tree (becomes the initrd).
    pub tree: &'a Path,
    /// The kernel (`.linux`) and its release (`.uname`).
    pub kernel: &'a Path,
    pub uname: &'a str,
    pub cmdline: &'a str,
    /// Output names are `<stem>.<ext>`.
    pub stem: &'a str,
    pub source_date_epoch: u64,
    /// The disk's GUIDs, the ESP's serial and the VHD seed (`[identity]`).
    pub identity: &'a crate::recipe::IdentityConfig,
    /// How the tree's host ids map back to the ids inside the sandbox.
    pub id_map: crate::treetar::IdMap,
}

/// Bumped whenever [`write`] changes what it makes of the same inputs (part of the output
/// step's key): 2 added the TDX registers of `gcp` images to the measurements.
pub const OUTPUTS_VERSION: u32 = 2;

/// Writes the outputs of a bootable format into `files` (using `scratch` for intermediate
/// files): the `.efi` with its predicted measurements (`<stem>.measurements.json`, in
/// measured-boot's shape, SHA-256 bank, Secure Boot off), then the disk of the format. For
/// `gcp`, the measurements also hold under `tdx` the TDX registers RTMR 1–3 (keys `2`–`4`,
/// dcap-qvl's numbering) of this UKI booted from this very disk (its GPT as OVMF measures
/// it); MRTD and RTMR 0 depend on GCP's firmware, not on the image.
pub fn write(inputs: &BootableInputs<'_>, files: &Path, scratch: &Path) -> Result<(), BuildError> {
    let BootableInputs {
        format,
        tree,
        kernel,
        uname,
        cmdline,
        stem,
        source_date_epoch,
        identity,
        id_map,
    } = inputs.clone();
    let initrd_path = if format == OutputFormat::Initrd {
        files.join(format!("{stem}.cpio.zst"))
    } else {
        scratch.join("initrd.cpio.zst")
    };
    // The UKI's parts from the tree and the kernel, read (and refused) before the long work.
    let uki_parts = if format == OutputFormat::Initrd {
        None
    } else {
        let tree_dir = crate::beneath::Beneath::open(tree)?;
        let stub = tree_dir.read(STUB)?;
        let os_release = tree_dir.read(OS_RELEASE)?;
        Some((stub, os_release, read_beneath_parent(kernel)?))
    };
    write_initrd(tree, &initrd_path, source_date_epoch, id_map)?;
    let Some((stub, os_release, linux)) = uki_parts else {
        return Ok(());
    };
    let stub_path = tree.join(STUB);
    let mut builder = uki::UkiBuilder::new(stub, stub_path.display().to_string());
    builder.os_release = Some(os_release);
    builder.cmdline = Some(cmdline.as_bytes().to_vec());
    builder.uname = Some(uname.to_string());
    builder.linux = Some(linux);
    builder.initrds = vec![read(&initrd_path)?];
    let efi = files.join(format!("{stem}.efi"));
    let layout = builder.layout().map_err(|e| image_err(&efi, e))?;
    let mut out =
        std::io::BufWriter::new(fs_err::File::create(&efi).map_err(BuildError::io(&efi))?);
    layout.write_to(&mut out).map_err(BuildError::io(&efi))?;
    out.flush().map_err(BuildError::io(&efi))?;
    drop(out);
    drop(layout);
    drop(builder);
    let measurements = files.join(format!("{stem}.measurements.json"));
    let predicted = Measurements::of(&efi)?;
    if format != OutputFormat::Gcp {
        predicted.write(None, &measurements)?;
    }
    if format == OutputFormat::Uki {
        return Ok(());
    }
    let guid = |s: &str| Guid::parse(s).map_err(|e| image_err(&efi, e));
    let (disk_guid, esp_guid) = (guid(&identity.disk_guid)?, guid(&identity.esp_guid)?);
    let efi_size = fs_err::metadata(&efi).map_err(BuildError::io(&efi))?.len();
    let esp = disk::uki_esp(&efi, source_date_epoch, identity.esp_volume_id())
        .map_err(|e| image_err(&efi, e))?;
    let raw = scratch.join("disk.raw");
    let layout = match format {
        OutputFormat::Gcp => EspDiskLayout::gcp(efi_size),
        OutputFormat::Azure => EspDiskLayout::azure(),
        _ => EspDiskLayout::qemu(),
    };
    disk::write_esp_disk(&raw, &layout, &esp, disk_guid, esp_guid)
        .map_err(|e| image_err(&raw, e))?;
    match format {
        OutputFormat::Gcp => {
            let tdx = predicted.tdx_on_gcp(&raw)?;
            predicted.write(Some(tdx), &measurements)?;
            let out = files.join(format!("{stem}-import.tar.gz"));
            gcp::write_import_tar_gz(&raw, &out).map_err(|e| image_err(&out, e))?;
        }
        OutputFormat::Azure => {
            let out = files.join(format!("{stem}.vhd"));
            vhd::write_fixed_vhd(
                &raw,
                &out,
                &vhd::VhdOptions::new(source_date_epoch, &identity.vhd_seed),
            )
            .map_err(|e| image_err(&out, e))?;
        }
        _ => {
            let out = files.join(format!("{stem}.qcow2"));
            qcow2::write(&raw, &out).map_err(|e| image_err(&out, e))?;
        }
    }
    fs_err::remove_file(&raw).map_err(BuildError::io(&raw))?;
    Ok(())
}

/// The measurements predicted for a UKI (every bank; Secure Boot off).
struct Measurements {
    efi: PathBuf,
    name: String,
    bytes: Vec<u8>,
    prediction: crate::measure::Prediction,
}

impl Measurements {
    fn of(efi: &Path) -> Result<Measurements, BuildError> {
        let bytes = read(efi)?;
        let name = efi
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let prediction =
            crate::measure::predict(&bytes, &name, &crate::measure::Options::default())
                .map_err(|e| image_err(efi, e))?;
        Ok(Measurements {
            efi: efi.to_path_buf(),
            name,
            bytes,
            prediction,
        })
    }

    /// The TDX registers of the UKI booted on GCP from `disk` (its GPT as OVMF measures it).
    fn tdx_on_gcp(&self, disk: &Path) -> Result<crate::measure::tdx::TdxPrediction, BuildError> {
        use crate::measure::tdx;
        use std::io::Read as _;
        let efi = &self.efi;
        // The header and the entries OVMF measures are in the first 34 sectors.
        let mut head = Vec::new();
        fs_err::File::open(disk)
            .map_err(BuildError::io(disk))?
            .take(1 << 20)
            .read_to_end(&mut head)
            .map_err(BuildError::io(disk))?;
        let gpt = tdx::GptEvent::of_disk(&head, &disk.display().to_string())
            .map_err(|e| image_err(disk, e))?;
        let uki = crate::pe::PeFile::parse(&self.bytes, self.name.clone())
            .map_err(|e| image_err(efi, e))?;
        let linux = uki
            .section(".linux")
            .map(|s| uki.section_memory(s))
            .ok_or_else(|| image_err(efi, "the UKI has no .linux section"))?;
        let kernel = crate::pe::PeFile::parse(&linux, format!("{} (.linux)", self.name))
            .map_err(|e| image_err(efi, e))?;
        tdx::predict_gcp(&uki, &kernel, &gpt, &self.prediction, None, None)
            .map_err(|e| image_err(efi, e))
    }

    /// Writes measured-boot's JSON (SHA-256 bank), with `tdx` (dcap-qvl's numbering of the
    /// registers) when given.
    fn write(
        &self,
        tdx: Option<crate::measure::tdx::TdxPrediction>,
        out: &Path,
    ) -> Result<(), BuildError> {
        let mut json = self
            .prediction
            .measured_boot_json(crate::measure::Bank::Sha256);
        if let Some(t) = tdx {
            json["tdx"] = serde_json::Value::Object(t.dcap_measurements());
        }
        let text = serde_json::to_string_pretty(&json).map_err(|e| image_err(out, e))? + "\n";
        fs_err::write(out, text).map_err(BuildError::io(out))
    }
}

fn write_initrd(
    tree: &Path,
    out_path: &Path,
    source_date_epoch: u64,
    id_map: crate::treetar::IdMap,
) -> Result<(), BuildError> {
    let mut opts = cpio::InitrdOptions::new(u32::try_from(source_date_epoch).unwrap_or(u32::MAX));
    opts.zstd_level = INITRD_ZSTD_LEVEL;
    opts.cpio.id_map = Some(id_map);
    let out = fs_err::File::create(out_path).map_err(BuildError::io(out_path))?;
    let mut out = std::io::BufWriter::new(out);
    cpio::write_initrd_zstd(tree, &mut out, &opts).map_err(|e| image_err(out_path, e))?;
    out.flush().map_err(BuildError::io(out_path))?;
    Ok(())
}

/// The kernel the image step took out of `/boot` (in `dir`), and its release.
pub fn find_kernel(dir: &Path) -> Result<(PathBuf, String), BuildError> {
    let mut found = Vec::new();
    for e in fs_err::read_dir(dir).map_err(BuildError::io(dir))? {
        let e = e.map_err(BuildError::io(dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(version) = name.strip_prefix("vmlinuz-") {
            found.push((e.path(), version.to_string()));
        }
    }
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        n => Err(BuildError::Image {
            path: dir.to_path_buf(),
            message: format!("expected one kernel (vmlinuz-*), found {n}"),
        }),
    }
}

/// Reads a file hermetic made itself (in the step's scratch or output directory).
fn read(path: &Path) -> Result<Vec<u8>, BuildError> {
    fs_err::read(path).map_err(BuildError::io(path))
}

/// Reads a file a step made (a kernel) beneath its directory, which is hermetic's own.
fn read_beneath_parent(path: &Path) -> Result<Vec<u8>, BuildError> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(BuildError::Image {
            path: path.to_path_buf(),
            message: "not a file path".into(),
        });
    };
    Ok(crate::beneath::read(dir, name)?)
}

fn image_err(path: &Path, e: impl std::fmt::Display) -> BuildError {
    BuildError::Image {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}
