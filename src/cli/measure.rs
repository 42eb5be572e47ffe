//! `hermetic measure`: predict the PCRs (and TDX RTMRs) a UKI will be measured to.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::Context;
use crate::measure::{self, Bank, tdx};
use crate::pe::PeFile;

/// Output shapes of `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for people (the default without --json).
    Table,
    /// measured-boot's `{"measurements":{"4":{"expected":"hex"},...}}` (the default with --json).
    MeasuredBoot,
    /// attested-tls-proxy's expected-measurements list
    /// `[{"measurement_id","attestation_type","measurements"}]`.
    AttestedTlsProxy,
}

/// Arguments of `hermetic measure`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The UKI to measure.
    #[arg(value_name = "FILE.efi")]
    pub file: PathBuf,

    /// Predict a boot with Secure Boot on (no `.linux` event in PCR 4).
    #[arg(long)]
    pub secure_boot: bool,

    /// PCR bank(s) to compute [default: both; JSON shapes use sha256 unless sha384 is the only
    /// one given].
    #[arg(long, value_enum)]
    pub bank: Vec<Bank>,

    /// Output shape; any shape but `table` is JSON.
    #[arg(long, value_enum)]
    pub format: Option<Format>,

    /// `measurement_id` in the attested-tls-proxy shape [default: the file name].
    #[arg(long, value_name = "ID")]
    pub measurement_id: Option<String>,

    /// systemd-pcrphase words extended into PCR 11 after boot, colon-separated
    /// (`enter-initrd:leave-initrd:sysinit:ready`) [default: none, as when the pcrphase units
    /// are masked].
    #[arg(long, value_name = "WORD:WORD...")]
    pub phase: Option<String>,

    /// The systemd version of the stub, when the UKI does not say it.
    #[arg(long, value_name = "MAJOR")]
    pub stub_version: Option<u32>,

    /// Refuse files whose length is not a multiple of 8 (tools disagree on their digest).
    #[arg(long)]
    pub strict: bool,

    /// Also predict Intel TDX registers for Google Cloud (RTMR 1 and 2, as dstack-mr-gcp).
    #[arg(long)]
    pub tdx_gcp: bool,

    /// The boot disk image (raw): its GPT is measured as the firmware reads it, instead of
    /// synthesizing the GPT event from --disk-guid and the other disk options.
    #[arg(long, requires = "tdx_gcp", value_name = "DISK.raw", conflicts_with_all = [
        "disk_guid", "esp_guid", "disk_size", "esp_size"])]
    pub disk: Option<PathBuf>,

    /// GPT disk GUID of the boot disk [default: dstack-mr-gcp's].
    #[arg(long, requires = "tdx_gcp", value_name = "GUID")]
    pub disk_guid: Option<String>,

    /// Unique partition GUID of the ESP [default: dstack-mr-gcp's].
    #[arg(long, requires = "tdx_gcp", value_name = "GUID")]
    pub esp_guid: Option<String>,

    /// Disk size in bytes [default: dstack-mr-gcp's rule from the UKI size].
    #[arg(long, requires = "tdx_gcp", value_name = "BYTES")]
    pub disk_size: Option<u64>,

    /// ESP size in bytes [default: dstack-mr-gcp's rule from the UKI size].
    #[arg(long, requires = "tdx_gcp", value_name = "BYTES")]
    pub esp_size: Option<u64>,

    /// First LBA of the ESP.
    #[arg(long, requires = "tdx_gcp", value_name = "LBA", default_value_t = 2048)]
    pub esp_start_lba: u64,

    /// FirstUsableLBA of the GPT header (sgdisk writes 34, dstack-mr-gcp assumes 2048).
    #[arg(long, requires = "tdx_gcp", value_name = "LBA", default_value_t = 2048)]
    pub first_usable_lba: u64,

    /// GPT name of the ESP partition.
    #[arg(long, requires = "tdx_gcp", value_name = "NAME", default_value = "esp")]
    pub esp_name: String,

    /// MRTD of the GCP firmware (hex, 48 bytes): it depends on the firmware only.
    #[arg(long, requires = "tdx_gcp", value_name = "HEX")]
    pub mrtd: Option<String>,

    /// RTMR 0 of the GCP firmware and machine type (hex, 48 bytes).
    #[arg(long, requires = "tdx_gcp", value_name = "HEX")]
    pub rtmr0: Option<String>,
}

/// Runs `hermetic measure`.
pub fn run(ctx: &Context, args: Args) -> anyhow::Result<ExitCode> {
    let name = args.file.display().to_string();
    let data = fs_err::read(&args.file)?;
    let banks = if args.bank.is_empty() {
        Bank::ALL.to_vec()
    } else {
        let mut b = args.bank.clone();
        b.sort();
        b.dedup();
        b
    };
    let mut compute_banks = banks.clone();
    if args.tdx_gcp && !compute_banks.contains(&Bank::Sha384) {
        compute_banks.push(Bank::Sha384);
    }
    let opts = measure::Options {
        secure_boot: args.secure_boot,
        banks: compute_banks,
        stub_version: args.stub_version,
        phases: args
            .phase
            .as_deref()
            .map(|p| {
                p.split(':')
                    .filter(|w| !w.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default(),
        strict: args.strict,
    };
    let prediction = measure::predict(&data, &name, &opts)?;

    let tdx = if args.tdx_gcp {
        let disk = tdx::GptDisk::dstack_with(
            data.len() as u64,
            &tdx::DiskOverrides {
                disk_guid: args.disk_guid.clone(),
                esp_guid: args.esp_guid.clone(),
                disk_size: args.disk_size,
                esp_size: args.esp_size,
                esp_start_lba: args.esp_start_lba,
                first_usable_lba: args.first_usable_lba,
                esp_name: args.esp_name.clone(),
            },
        );
        let gpt_event = match &args.disk {
            Some(path) => {
                // The header and the entries are in the first 34 sectors; read a little more.
                let mut head = vec![0u8; 1 << 20];
                let mut f = fs_err::File::open(path)?;
                let n = read_up_to(&mut f, &mut head)?;
                head.truncate(n);
                tdx::GptEvent::of_disk(&head, &path.display().to_string())?
            }
            None => tdx::GptEvent::synthetic(&disk)?,
        };
        let uki = PeFile::parse(&data, name.clone())?;
        let linux = uki
            .section(".linux")
            .map(|s| uki.section_memory(s))
            .context("the UKI has no .linux section")?;
        let kernel = PeFile::parse(&linux, format!("{name} (.linux)"))?;
        let mrtd = args
            .mrtd
            .as_deref()
            .map(|v| tdx::parse_register("MRTD", v))
            .transpose()?;
        let rtmr0 = args
            .rtmr0
            .as_deref()
            .map(|v| tdx::parse_register("RTMR0", v))
            .transpose()?;
        Some(tdx::predict_gcp(
            &uki,
            &kernel,
            &gpt_event,
            &prediction,
            mrtd,
            rtmr0,
        )?)
    } else {
        None
    };

    let format = args.format.unwrap_or(if ctx.json {
        Format::MeasuredBoot
    } else {
        Format::Table
    });
    let json_bank = if banks == [Bank::Sha384] {
        Bank::Sha384
    } else {
        Bank::Sha256
    };
    let mut out = std::io::stdout().lock();
    if format != Format::Table || ctx.chatty() {
        for w in &prediction.warnings {
            eprintln!("warning: {w}");
        }
    }
    match format {
        Format::Table => {
            write_table(&mut out, &prediction, &banks, tdx.as_ref(), ctx.verbosity)?;
        }
        Format::MeasuredBoot => {
            let mut v = prediction.measured_boot_json(json_bank);
            if let Some(t) = &tdx {
                v["tdx"] = serde_json::Value::Object(t.dcap_measurements());
            }
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        }
        Format::AttestedTlsProxy => {
            let id = args.measurement_id.clone().unwrap_or_else(|| {
                args.file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| name.clone())
            });
            let mut list = vec![serde_json::json!({
                "measurement_id": id,
                "attestation_type": "azure-tdx",
                "measurements": prediction.expected(json_bank),
            })];
            if let Some(t) = &tdx {
                if t.mrtd.is_none() || t.rtmr0.is_none() {
                    eprintln!(
                        "warning: without --mrtd and --rtmr0 the dcap-tdx entry checks only \
                         RTMR 1-3: the firmware is not pinned"
                    );
                }
                list.push(serde_json::json!({
                    "measurement_id": format!("{id}-gcp-tdx"),
                    "attestation_type": "dcap-tdx",
                    "measurements": t.dcap_measurements(),
                }));
            }
            writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads until `buf` is full or the file ends.
fn read_up_to(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn write_table(
    out: &mut impl std::io::Write,
    p: &measure::Prediction,
    banks: &[Bank],
    tdx: Option<&tdx::TdxPrediction>,
    verbosity: i8,
) -> std::io::Result<()> {
    writeln!(out, "{}", p.file)?;
    writeln!(
        out,
        "  systemd-stub {}, Secure Boot {}",
        p.stub.full,
        if p.secure_boot { "on" } else { "off" }
    )?;
    writeln!(out)?;
    writeln!(out, "{:<6} {:<7} value", "PCR", "bank")?;
    for (pcr, values) in &p.pcrs {
        for bank in banks {
            if let Some(v) = values.get(bank) {
                writeln!(out, "{:<6} {:<7} {}", pcr, bank.to_string(), hex::encode(v))?;
            }
        }
    }
    if verbosity > 0 {
        writeln!(out)?;
        writeln!(out, "events:")?;
        for e in &p.events {
            writeln!(out, "  PCR {:<2} {}", e.pcr, e.description)?;
            for bank in banks {
                if let Some(d) = e.digests.get(bank) {
                    writeln!(out, "         {:<7} {}", bank.to_string(), hex::encode(d))?;
                }
            }
        }
    }
    if let Some(t) = tdx {
        writeln!(out)?;
        writeln!(out, "TDX (GCP, sha384)")?;
        let show = |v: &Option<Vec<u8>>| {
            v.as_ref()
                .map(hex::encode)
                .unwrap_or_else(|| "(firmware: give --mrtd/--rtmr0)".into())
        };
        writeln!(out, "  MRTD   {}", show(&t.mrtd))?;
        writeln!(out, "  RTMR0  {}", show(&t.rtmr0))?;
        writeln!(out, "  RTMR1  {}", hex::encode(&t.rtmr1))?;
        writeln!(out, "  RTMR2  {}", hex::encode(&t.rtmr2))?;
        writeln!(out, "  RTMR3  {}", hex::encode(&t.rtmr3))?;
        if verbosity > 0 {
            for (d, v) in &t.rtmr1_events {
                writeln!(out, "    RTMR1 {d}\n          {}", hex::encode(v))?;
            }
        }
    }
    Ok(())
}
