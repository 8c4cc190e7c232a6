//! The command line of `giva-manager`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use clap::{Args, Parser, Subcommand};
use giva_runtime::LogFormat;

/// The giva manager: records detections from appliances and quarantines VMs.
#[derive(Debug, Parser)]
#[command(name = "giva-manager", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the manager service.
    Serve(ServeArgs),
    /// List stored events.
    Events {
        /// The manager to ask.
        #[command(flatten)]
        manager: ManagerUrl,
        /// Only events of this VM.
        #[arg(long)]
        vm: Option<String>,
        /// Only events received since this time (RFC 3339) or duration ago (10m).
        #[arg(long, value_parser = parse_since)]
        since: Option<i64>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// List known VMs and their state.
    Vms {
        /// The manager to ask.
        #[command(flatten)]
        manager: ManagerUrl,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Remove a VM's quarantine tag and mark it clean (manual override).
    Untag {
        /// The manager to ask.
        #[command(flatten)]
        manager: ManagerUrl,
        /// The VM id.
        vm: String,
    },
    /// Ask a VM's appliance for a full scan (a clean result releases the VM).
    Scan {
        /// The manager to ask.
        #[command(flatten)]
        manager: ManagerUrl,
        /// The VM id.
        vm: String,
    },
    /// Let a full scan skip one file (over a limit) and still release the
    /// VM: an audited exception for that path and that content only.
    Except {
        /// The manager to ask.
        #[command(flatten)]
        manager: ManagerUrl,
        /// The VM id.
        vm: String,
        /// The file's path in the guest.
        path: String,
        /// The SHA-256 of the content accepted (64 hex digits).
        #[arg(long)]
        sha256: String,
        /// Why it is accepted (kept with the exception).
        #[arg(long)]
        reason: String,
    },
    /// The certificate authority, kept in the store: make it, sign
    /// certificates, make enrollment tokens, revoke, rotate.
    Ca(CaArgs),
    /// Cancel a VM's pending tagging actions (they are otherwise retried
    /// until applied): for example when its NSX object is gone for good.
    Cancel {
        /// The manager to ask.
        #[command(flatten)]
        manager: ManagerUrl,
        /// The VM id.
        vm: String,
    },
    /// List VM state changes, with their causes and tagging actions, from
    /// the manager's database file.
    Transitions {
        /// The SQLite database file (default as for `serve`).
        #[arg(long)]
        db: Option<PathBuf>,
        /// Only this VM.
        #[arg(long)]
        vm: Option<String>,
        /// At most this many (the newest).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

/// Where the operator commands find the manager, and their token.
#[derive(Debug, Clone, Args)]
pub struct ManagerUrl {
    /// The manager's URL.
    #[arg(
        long = "manager",
        env = "GIVA_MANAGER",
        default_value = "http://127.0.0.1:7412"
    )]
    pub url: String,
    /// The file holding the token to call with (default: the operator
    /// token that `giva-manager serve` made in its state directory).
    #[arg(long, env = "GIVA_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// The CA that signed the manager's certificate (for `https://`).
    #[arg(long, env = "GIVA_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

impl ManagerUrl {
    /// The token file to read.
    pub fn token_file(&self) -> PathBuf {
        self.token_file.clone().unwrap_or_else(default_token_file)
    }
}

/// Where `giva-manager serve` keeps its operator token by default, and
/// where the operator commands look for it.
pub fn default_token_file() -> PathBuf {
    crate::default_state_dir().join("operator.token")
}

/// `giva-manager serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on for appliances and operators.
    #[arg(long, default_value = "127.0.0.1:7412")]
    pub listen: SocketAddr,
    /// Address of the admin HTTP endpoint (`/metrics`, `/healthz`).
    #[arg(long, default_value = "127.0.0.1:9412")]
    pub admin_listen: SocketAddr,
    /// No admin endpoint.
    #[arg(long)]
    pub no_admin: bool,
    /// The SQLite database file for events and VMs (`:memory:` keeps
    /// nothing across restarts). Default: /var/lib/giva-manager/manager.sqlite
    /// as root, else ~/.local/state/giva-manager/manager.sqlite.
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    pub log_format: LogFormat,
    /// The TOML configuration (quarantine policy and tagging actions).
    /// Without it: tag on any detection, untag after a clean full scan,
    /// no tagging action (quarantines are recorded only).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// The operator token's file: made (mode 0600) at first start and
    /// read by the operator commands on this host. Default: operator.token
    /// in the state directory.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// A file holding a token that may only read (events, VMs); made at
    /// first start if missing. Without it, reading needs the operator token.
    #[arg(long)]
    pub reader_token_file: Option<PathBuf>,
    /// The manager's TLS certificate (PEM): with it and its key, clients
    /// connect with `https://`.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The CA that signs appliances' certificates: with it, an appliance's
    /// calls are taken only from the appliance its certificate names.
    /// A bundle of several CAs is accepted (during a CA rotation).
    #[arg(long, requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// The CAs' revocation lists (PEM): a certificate on one is refused.
    /// The certificate, key, client CA and lists are read again on SIGHUP.
    #[arg(long, requires = "client_ca")]
    pub crl: Option<PathBuf>,
    /// Accept plaintext on a non-loopback address.
    #[arg(long)]
    pub insecure_plaintext: bool,
}

/// `giva-manager ca`: the CA, kept in the manager's store.
#[derive(Debug, clap::Args)]
pub struct CaArgs {
    /// The store (default as for `serve`).
    #[arg(long, global = true)]
    pub db: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: CaCommand,
}

/// `giva-manager ca` commands.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Make the CA in the store, or keep the one there (one made by an
    /// earlier release in --dir as ca.pem and ca.key is adopted); write
    /// the CAs to trust (ca.pem) and their revocation lists (crl.pem) into
    /// --dir.
    Init {
        /// Where to write ca.pem and crl.pem (default: the state
        /// directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Sign a certificate for NAME in a role (an appliance's id, a VM's
    /// id, or a server's host name) and write NAME.pem, NAME.key (mode
    /// 0600), ca.pem and crl.pem into --out.
    Issue {
        /// The name the certificate gives its holder.
        name: String,
        /// What it is for: `appliance` (serves shims and reports to the
        /// manager), `vm` (a shim), or `server` (the manager's listener).
        /// Peers check the role, so a VM's certificate cannot speak for an
        /// appliance.
        #[arg(long, value_parser = parse_role)]
        role: giva_proto::tls::Role,
        /// Where to write the files.
        #[arg(long)]
        out: PathBuf,
        /// Further DNS names it is valid for (a server's host names).
        #[arg(long)]
        dns: Vec<String>,
        /// IP addresses it is valid for (a server's addresses).
        #[arg(long)]
        ip: Vec<std::net::IpAddr>,
        /// Days it is valid.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// For an appliance: also its delegated CA (NAME-delegate.pem and
        /// .key), with which it signs instant clones' certificates, and the
        /// clone key (clone.key) it checks clone tokens with.
        #[arg(long)]
        delegate: bool,
    },
    /// Replace the clone key (after an appliance that held it is revoked):
    /// writes the new clone.key into --dir; give it to every appliance and
    /// send it SIGHUP. Clone tokens signed with the old key stop working.
    RotateCloneKey {
        /// Where to write clone.key (default: the state directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Make a clone token for VM: the instant clone's customization step
    /// hands it to `giva-shim enroll`, and the appliance (which has the
    /// clone key) signs the clone's certificate with no manager round trip.
    CloneToken {
        /// The clone's VM id.
        vm: String,
        /// How long it may be used (a day at most).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
    /// Make a one-time enrollment token for an appliance or a VM named
    /// NAME: `giva enroll` (or `giva-shim enroll`) trades it for a
    /// certificate. It is printed once; only its digest is kept.
    Token {
        /// The appliance's or VM's id.
        name: String,
        /// `appliance` or `vm`.
        #[arg(long, value_parser = parse_role)]
        role: giva_proto::tls::Role,
        /// DNS names the certificate is valid for too (an appliance's host
        /// name, which shims dial). Fixed here, not by the enrolling host.
        #[arg(long)]
        dns: Vec<String>,
        /// IP addresses it is valid for too.
        #[arg(long)]
        ip: Vec<std::net::IpAddr>,
        /// How long it may be used (such as 30m, 24h, 7d).
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
    },
    /// Revoke a certificate by its serial number, or every certificate of
    /// a role and name. The manager refuses a revoked appliance at once;
    /// crl.pem in --dir is rewritten for the appliances (which read it
    /// again on SIGHUP).
    Revoke {
        /// The serial number (hex, as `ca list` shows).
        serial: Option<String>,
        /// With --name: every certificate of this role and name.
        #[arg(long, value_parser = parse_role, requires = "name", conflicts_with = "serial")]
        role: Option<giva_proto::tls::Role>,
        /// With --role.
        #[arg(long, requires = "role")]
        name: Option<String>,
        /// Why (kept with the record).
        #[arg(long, default_value = "")]
        reason: String,
        /// Where to write ca.pem and crl.pem (default: the state
        /// directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Start a CA rotation: a new CA signs from now on, and ca.pem in
    /// --dir holds both, so certificates from either are accepted while
    /// they are renewed. End it with `ca retire`.
    Rotate {
        /// Where to write ca.pem and crl.pem (default: the state
        /// directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// End a CA rotation: stop trusting generation GEN (ca.pem in --dir
    /// no longer holds it).
    Retire {
        /// The generation (as `ca list` shows).
        generation: i64,
        /// Where to write ca.pem and crl.pem (default: the state
        /// directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// List the CA's generations and the certificates they issued.
    List {
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Write the CAs to trust (ca.pem) and their revocation lists
    /// (crl.pem) into --dir.
    Export {
        /// Where (default: the state directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Parses `--role`.
fn parse_role(s: &str) -> Result<giva_proto::tls::Role, String> {
    use giva_proto::tls::Role;
    match s {
        "appliance" => Ok(Role::Appliance),
        "vm" => Ok(Role::Vm),
        "server" => Ok(Role::Server),
        other => Err(format!("'{other}' is no role: appliance, vm or server")),
    }
}

/// A `--since` that is neither a time nor a duration.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is neither a time (2026-01-31T12:00:00Z) nor a duration ago (10m, 2h)")]
pub struct BadSince(String);

/// Parses `--since`: an RFC 3339 time, or a duration ago such as `10m`,
/// as microseconds since the epoch.
///
/// # Errors
///
/// [`BadSince`], saying which forms are accepted.
pub fn parse_since(s: &str) -> Result<i64, BadSince> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        let us = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
        return Ok(i64::try_from(us).unwrap_or(i64::MAX));
    }
    match humantime::parse_duration(s) {
        Ok(ago) => Ok(giva_proto::now_us() - i64::try_from(ago.as_micros()).unwrap_or(i64::MAX)),
        Err(_) => Err(BadSince(s.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_times_and_durations_and_names_the_forms_otherwise() {
        assert_eq!(parse_since("1970-01-01T00:00:01Z").unwrap(), 1_000_000);
        let ago = parse_since("10m").unwrap();
        assert!((giva_proto::now_us() - ago - 600_000_000).abs() < 5_000_000);
        assert!(
            parse_since("yesterday")
                .unwrap_err()
                .to_string()
                .contains("10m")
        );
    }
}
