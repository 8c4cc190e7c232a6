//! The command line of `giva-shim`, and how each command's flags become
//! its configuration.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use giva_proto::shim::VmIdentity;

use crate::load::LoadConfig;
use crate::scan::ScanConfig;
use crate::watch::{Backend, DEFAULT_VAULT, MarkScope, WatchConfig};

/// The giva guest shim: reports file activity to the appliance and enforces
/// its verdicts.
#[derive(Debug, Parser)]
#[command(name = "giva-shim", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// On-access protection: hold opens and execs of files under PATH until
    /// the appliance's verdict (fanotify), or quarantine infected files after
    /// they are written (inotify fallback).
    Watch(WatchArgs),
    /// Load generator: simulate N VMs instant-cloned from one image directory
    /// and measure the appliance (registration storm, then blocking opens).
    Load(LoadArgs),
    /// Full scan: send every file under PATH to the appliance and print the verdicts.
    Scan(ScanArgs),
    /// Enroll this VM against a one-time token (made with `giva-manager ca
    /// token VM --role vm`): a key is made here and stays here, and the
    /// manager, through the appliance, signs it for the token's VM. Writes
    /// vm.pem, vm.key (mode 0600), ca.pem and crl.pem into --out.
    Enroll(EnrollArgs),
}

/// `giva-shim enroll`.
#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The appliance (`https://HOST:7411`, or `unix:`/`vsock://`).
    #[arg(long, env = "GIVA_APPLIANCE", default_value = "http://127.0.0.1:7411")]
    pub appliance: String,
    /// The CA that signed the appliance's certificate (for https://).
    #[arg(long, env = "GIVA_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// A file holding the token. Without it, the token is read from the
    /// environment variable GIVA_ENROLL_TOKEN (where a clone's
    /// customization step puts it), never from the command line, which
    /// other users can see.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Where to write the files.
    #[arg(long, default_value = "/etc/giva")]
    pub out: PathBuf,
    /// Make a new key even if one is there.
    #[arg(long)]
    pub force: bool,
}

/// TLS to an `https://` appliance.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// The CA that signed the appliance's certificate (needed for https://).
    #[arg(long, env = "GIVA_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// This VM's certificate, naming its VM id (when the appliance asks).
    #[arg(long, env = "GIVA_CERT_FILE")]
    pub cert: Option<PathBuf>,
    /// The certificate's key.
    #[arg(long, env = "GIVA_KEY_FILE")]
    pub key: Option<PathBuf>,
}

impl From<&TlsArgs> for giva_proto::tls::ClientFiles {
    fn from(a: &TlsArgs) -> Self {
        giva_proto::tls::ClientFiles {
            ca: a.ca_file.clone().unwrap_or_default(),
            cert: a.cert.clone().unwrap_or_default(),
            key: a.key.clone().unwrap_or_default(),
        }
    }
}

/// Who this VM is and where its appliance is.
#[derive(Debug, Clone, Args)]
pub struct Identity {
    /// The appliance's URL (`https://` for TLS, with --ca-file).
    #[arg(long, env = "GIVA_APPLIANCE", default_value = "http://127.0.0.1:7411")]
    pub appliance: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub tls: TlsArgs,
    /// This VM's id (default: /etc/machine-id, or the host name).
    #[arg(long)]
    pub vm_id: Option<String>,
    /// This VM's name (default: the host name).
    #[arg(long)]
    pub vm_name: Option<String>,
    /// The image this VM was cloned from (clones of one image share verdicts).
    #[arg(long, default_value = "")]
    pub image_id: String,
}

impl Identity {
    /// The appliance's URL and the VM identity to register with.
    pub fn resolve(self) -> (String, VmIdentity) {
        let mut vm = crate::client::default_identity();
        if let Some(v) = self.vm_id {
            vm.vm_id = v;
        }
        if let Some(n) = self.vm_name {
            vm.name = n;
        }
        vm.image_id = self.image_id;
        (self.appliance, vm)
    }
}

/// Where fanotify marks go (`--mark`).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MarkArg {
    /// A mount mark for mount points, inode marks otherwise.
    Auto,
    /// Inode marks on each directory and its subdirectories.
    Inode,
    /// A mount mark on the mount holding each path.
    Mount,
    /// A file-system mark on the file system holding each path.
    Filesystem,
}

impl From<MarkArg> for MarkScope {
    fn from(m: MarkArg) -> Self {
        match m {
            MarkArg::Auto => MarkScope::Auto,
            MarkArg::Inode => MarkScope::Inode,
            MarkArg::Mount => MarkScope::Mount,
            MarkArg::Filesystem => MarkScope::Filesystem,
        }
    }
}

/// `giva-shim watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub identity: Identity,
    /// Deny held accesses when no verdict comes in time (overrides the policy).
    #[arg(long, conflicts_with = "fail_open")]
    pub fail_closed: bool,
    /// Allow held accesses when no verdict comes in time (overrides the policy).
    #[arg(long)]
    pub fail_open: bool,
    /// How long a held access waits for a verdict (overrides the policy).
    #[arg(long)]
    pub decision_timeout_ms: Option<u64>,
    /// Use notify-only watching (inotify) even where fanotify works.
    #[arg(long)]
    pub no_fanotify: bool,
    /// Fail instead of falling back when fanotify is unavailable.
    #[arg(long, conflicts_with = "no_fanotify")]
    pub require_fanotify: bool,
    /// Where fanotify marks go.
    #[arg(long, value_enum, default_value = "auto")]
    pub mark: MarkArg,
    /// Where notify-only watching moves infected files.
    #[arg(long, default_value = DEFAULT_VAULT)]
    pub vault: PathBuf,
    /// Events in flight to the appliance at once.
    #[arg(long, default_value_t = 64)]
    pub max_inflight: usize,
    /// Directories, mount points or files to watch.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

impl From<WatchArgs> for WatchConfig {
    fn from(a: WatchArgs) -> Self {
        let tls = (&a.identity.tls).into();
        let (appliance, vm) = a.identity.resolve();
        let mut config = WatchConfig::new(appliance, vm, a.paths);
        config.tls = tls;
        config.overrides.fail_open = match (a.fail_open, a.fail_closed) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        };
        config.overrides.decision_timeout = a.decision_timeout_ms.map(Duration::from_millis);
        config.backend = match (a.no_fanotify, a.require_fanotify) {
            (true, _) => Backend::Notify,
            (_, true) => Backend::Fanotify,
            _ => Backend::Auto,
        };
        config.mark = a.mark.into();
        config.vault = a.vault;
        config.max_inflight = a.max_inflight;
        config
    }
}

/// `giva-shim load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The appliance's URL.
    #[arg(long, env = "GIVA_APPLIANCE", default_value = "http://127.0.0.1:7411")]
    pub appliance: String,
    /// Number of VMs to simulate.
    #[arg(long)]
    pub vms: usize,
    /// The image directory every VM is cloned from.
    #[arg(long)]
    pub image: PathBuf,
    /// The image id the VMs share.
    #[arg(long, default_value = "load-image")]
    pub image_id: String,
    /// Files each VM opens (default: each file of the image once).
    #[arg(long)]
    pub opens_per_vm: Option<usize>,
    /// Share of the opens sent as EXEC, in percent.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub exec_percent: u8,
    /// VMs opening files at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// VMs registering at once during the storm.
    #[arg(long, default_value_t = 256)]
    pub register_concurrency: usize,
    /// Events in flight per VM.
    #[arg(long, default_value_t = 4)]
    pub inflight_per_vm: usize,
    /// gRPC connections shared by the VMs.
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Stop issuing events after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub duration: u64,
    /// Open loop: offer this many events per second in all, spread over
    /// every VM at once, and time each verdict from when its event was due
    /// (default: closed loop, as fast as the appliance answers).
    #[arg(long, value_parser = positive_rate)]
    pub rate: Option<f64>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Prefix of the simulated VMs' ids (`PREFIX-0001`, ...).
    #[arg(long, default_value = "load-vm")]
    pub vm_prefix: String,
    /// First run the template VM (`PREFIX-0000`) through every file, as a
    /// running parent would have been; the appliance's inventory must name
    /// it the image's template for the clones to share its verdicts.
    #[arg(long)]
    pub template: bool,
    /// A file with the clone key (hex, as `giva-manager ca issue
    /// --delegate` writes clone.key): each VM enrolls with a clone token
    /// of its own and connects with its own certificate.
    #[arg(long, value_parser = read_clone_key)]
    pub clone_key: Option<CloneKey>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub tls: TlsArgs,
}

impl From<&LoadArgs> for LoadConfig {
    fn from(a: &LoadArgs) -> Self {
        let mut config = LoadConfig::new(a.appliance.clone(), a.vms, a.image.clone());
        config.tls = (&a.tls).into();
        config.template = a.template;
        config.clone_key = a.clone_key.as_ref().map(|k| k.0.clone());
        config.vm_prefix = a.vm_prefix.clone();
        config.image_id = a.image_id.clone();
        config.opens_per_vm = a.opens_per_vm;
        config.exec_percent = a.exec_percent;
        config.concurrency = a.concurrency;
        config.register_concurrency = a.register_concurrency;
        config.inflight_per_vm = a.inflight_per_vm;
        config.connections = a.connections;
        config.duration = Duration::from_secs(a.duration);
        config.rate = a.rate;
        config
    }
}

/// Reads `--rate`: a finite number of events per second above zero.
fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("{s}: not a rate above zero (events per second)")),
    }
}

/// The clone key `--clone-key` read.
#[derive(Clone)]
pub struct CloneKey(pub Vec<u8>);

impl std::fmt::Debug for CloneKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CloneKey(<redacted>)")
    }
}

/// Reads `--clone-key`: a file holding a hex key.
fn read_clone_key(path: &str) -> Result<CloneKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    hex::decode(text.trim())
        .map(CloneKey)
        .map_err(|_| format!("{path}: not a hex key"))
}

/// `giva-shim scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub identity: Identity,
    /// One JSON object per file instead of clamscan-style lines.
    #[arg(long)]
    pub json: bool,
    /// Files in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Do not print the summary.
    #[arg(long)]
    pub no_summary: bool,
    /// Files and directories to scan.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

impl ScanArgs {
    /// The scan's configuration (the output flags stay with the command).
    pub fn config(&self) -> ScanConfig {
        let (appliance, vm) = self.identity.clone().resolve();
        let mut config = ScanConfig::new(appliance, vm, self.paths.clone());
        config.tls = (&self.identity.tls).into();
        config.concurrency = self.concurrency;
        config
    }
}
