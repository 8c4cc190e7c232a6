//! The command line of `giva`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use giva_runtime::LogFormat;

use crate::config::Config;

/// giva: the guest-introspection scan appliance.
#[derive(Debug, Parser)]
#[command(name = "giva", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the appliance: serve shims over gRPC and report to the manager.
    Serve(ServeArgs),
    /// Scan local files, like clamscan on raw files.
    Scan(ScanArgs),
    /// Compile, inspect and verify signature databases.
    #[command(subcommand)]
    Db(DbCommand),
    /// Enroll this appliance with the manager against a one-time token
    /// (made with `giva-manager ca token NAME --role appliance`): a key is
    /// made here and stays here, and the manager signs it for NAME. Writes
    /// appliance.pem, appliance.key (mode 0600), ca.pem and crl.pem into
    /// --out, and prints the configuration that uses them.
    Enroll(EnrollArgs),
}

/// `giva enroll`.
#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The manager (`https://HOST:7412`).
    #[arg(long)]
    pub manager: String,
    /// The CA that signed the manager's certificate (its ca.pem).
    #[arg(long)]
    pub ca_file: PathBuf,
    /// A file holding the token. Without it, the token is read from the
    /// environment variable GIVA_ENROLL_TOKEN (where an appliance image's
    /// first-boot step puts its property), never from the command line,
    /// which other users can see.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Where to write the files (default: tls/ in the state directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Make a new key even if one is there.
    #[arg(long)]
    pub force: bool,
}

/// `giva serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (TOML). Options given on the command line win.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Address to listen on for shims.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// The manager's URL (e.g. http://127.0.0.1:7412).
    #[arg(long)]
    pub manager: Option<String>,
    /// Address of the admin endpoint (/metrics, /healthz, POST /reload).
    #[arg(long, conflicts_with = "no_admin")]
    pub admin_listen: Option<SocketAddr>,
    /// Run without the admin endpoint.
    #[arg(long)]
    pub no_admin: bool,
    /// Also serve shims on this Unix socket.
    #[arg(long)]
    pub unix_socket: Option<PathBuf>,
    /// Signature database: files, directories, containers or a compiled
    /// database (repeatable). Default: the bundled database.
    #[arg(short = 'd', long = "db")]
    pub db: Vec<PathBuf>,
    /// Serve even with a database that holds no signature (it would call
    /// every file clean).
    #[arg(long)]
    pub allow_empty: bool,
    /// Seconds between heartbeats to the manager.
    #[arg(long)]
    pub heartbeat_interval: Option<u64>,
    /// Directory for the appliance's state (the outbox, the admin token). Default:
    /// /var/lib/giva as root, else ~/.local/state/giva.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    pub log_format: LogFormat,
    /// Print the effective configuration (defaults plus overrides) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Accept plaintext listeners on non-loopback addresses.
    #[arg(long)]
    pub insecure_plaintext: bool,
}

impl ServeArgs {
    /// The configuration: the file's (or the defaults), with the options
    /// given on the command line on top, validated.
    ///
    /// # Errors
    ///
    /// The file cannot be read or parsed, or the result is invalid.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(l) = self.listen {
            config.server.listen = l;
        }
        if let Some(m) = &self.manager {
            config.manager.url.clone_from(m);
        }
        if let Some(a) = self.admin_listen {
            config.server.admin_listen = Some(a);
        }
        if self.no_admin {
            config.server.admin_listen = None;
        }
        if let Some(u) = &self.unix_socket {
            config.server.unix_socket = Some(u.clone());
        }
        if !self.db.is_empty() {
            config.database.paths.clone_from(&self.db);
        }
        if self.allow_empty {
            config.database.allow_empty = true;
        }
        if let Some(d) = &self.data_dir {
            config.outbox.path = d.join("outbox.sqlite");
            config.server.admin_token_file = d.join("admin.token");
        }
        if self.insecure_plaintext {
            config.server.insecure_plaintext = true;
        }
        if let Some(h) = self.heartbeat_interval {
            config.manager.heartbeat_interval_secs = h;
        }
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        Ok(config)
    }
}

/// `giva scan`.
#[derive(Debug, Clone, Default, Args)]
pub struct ScanArgs {
    /// Signature database (repeatable). Default: the bundled database.
    #[arg(short = 'd', long = "database")]
    pub databases: Vec<PathBuf>,
    /// Scan even with a database that holds no signature.
    #[arg(long)]
    pub allow_empty: bool,
    /// Scan directories recursively.
    #[arg(short, long)]
    pub recursive: bool,
    /// Report every matching signature, not just the first.
    #[arg(long = "allmatch")]
    pub all_match: bool,
    /// One JSON object per file.
    #[arg(long)]
    pub json: bool,
    /// Worker threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Do not print the summary.
    #[arg(long)]
    pub no_summary: bool,
    /// Print only infected files.
    #[arg(short, long = "infected")]
    pub infected_only: bool,
    /// Report a limit hit inside a file as a detection
    /// (`Heuristics.Limits.Exceeded.*`), as `clamscan --alert-exceeds-max`.
    #[arg(long)]
    pub alert_exceeds_max: bool,
    /// Report an encrypted member as a detection
    /// (`Heuristics.Encrypted.Archive`), as `clamscan --alert-encrypted`.
    #[arg(long)]
    pub alert_encrypted: bool,
    /// Largest member extracted from a file, in bytes; a larger one is not
    /// scanned (ClamAV's default, 100 MB).
    #[arg(long = "max-filesize", default_value_t = giva_content::Limits::default().max_file_size)]
    pub max_file_size: u64,
    /// Bytes scanned for one file and everything extracted from it
    /// (ClamAV's default, 400 MB).
    #[arg(long = "max-scansize", default_value_t = giva_content::Limits::default().max_scan_size)]
    pub max_scan_size: u64,
    /// Members extracted from one file (ClamAV's default, 10000).
    #[arg(long = "max-files", default_value_t = giva_content::Limits::default().max_files)]
    pub max_files: u64,
    /// Containers opened inside one another (ClamAV's default, 17).
    #[arg(long = "max-recursion", default_value_t = giva_content::Limits::default().max_recursion)]
    pub max_recursion: u32,
    /// Time for one file and all its layers, in milliseconds (ClamAV's
    /// default, 120000).
    #[arg(long = "max-scantime", default_value_t = 120_000)]
    pub max_scan_time_ms: u64,
    /// Files and directories to scan.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// `giva db`.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Compile signature sources into one database file.
    Compile {
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
        /// Write a database even if the sources hold no signature.
        #[arg(long)]
        allow_empty: bool,
        /// Sources: signature files, directories, .cvd/.cld/.cud containers,
        /// or a compiled database (to store its engine in this build's
        /// format).
        #[arg(required = true)]
        sources: Vec<PathBuf>,
    },
    /// Show what a database holds (default: the bundled database).
    Info {
        /// JSON output.
        #[arg(long)]
        json: bool,
        /// Database files, directories or containers.
        paths: Vec<PathBuf>,
    },
    /// Check compiled databases, containers or signature files without
    /// using them (exit 0: all good; 2: one failed).
    Verify {
        /// Accept a file that holds no signature.
        #[arg(long)]
        allow_empty: bool,
        /// Files to check.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}
