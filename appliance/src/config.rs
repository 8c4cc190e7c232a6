//! The appliance's configuration: one TOML file, every option defaulted.
//! `giva serve --print-config` prints the defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This appliance's id, reported to the manager. Empty: `giva-<hostname>`.
    pub appliance_id: String,
    /// Listeners and per-stream limits.
    pub server: ServerConfig,
    /// Which signatures to load.
    pub database: DatabaseConfig,
    /// Where detections go.
    pub manager: ManagerConfig,
    /// Scan limits.
    pub limits: LimitsConfig,
    /// Full-scan storm control.
    pub full_scan: FullScanConfig,
    /// The policy for VMs without a group (or with an unknown one).
    pub policy: PolicyConfig,
    /// Policies of named VM groups (`[groups.NAME]`), chosen by the VM's
    /// group in the inventory. Each is a full policy: options it leaves
    /// out take the built-in defaults, not the values of `[policy]`.
    pub groups: std::collections::BTreeMap<String, PolicyConfig>,
    /// Where each VM belongs (`[[inventory]]`, first match wins): its
    /// group, its image, and whether it is the image's template. A VM no
    /// entry names gets the default policy and shares no verdicts. What a
    /// guest says of its group or image when it registers is ignored.
    pub inventory: Vec<InventoryEntry>,
    /// The durable outbox of events for the manager.
    pub outbox: OutboxConfig,
    /// The verdict cache.
    pub cache: CacheConfig,
    /// The scan pool.
    pub pool: PoolConfig,
    /// Instant clones' certificates, signed here against clone tokens.
    pub clones: ClonesConfig,
}

/// `[clones]`: with a delegated CA from the manager and the clone key, the
/// appliance signs an instant clone's certificate itself when the clone
/// enrolls with a clone token, so that registration needs no manager round
/// trip. Empty files: clone tokens are refused.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ClonesConfig {
    /// The delegated CA's certificate (`giva enroll` writes
    /// delegate.pem; `giva-manager ca issue --delegate` NAME-delegate.pem).
    pub delegate_cert_file: PathBuf,
    /// Its key.
    pub delegate_key_file: PathBuf,
    /// The clone key clone tokens are checked with (clone.key).
    pub clone_key_file: PathBuf,
    /// How long a clone's certificate is valid, in hours: short, because a
    /// clone's certificate is not revoked one by one (revoking the
    /// appliance's delegated CA refuses them all).
    pub cert_hours: u32,
}

impl Default for ClonesConfig {
    fn default() -> Self {
        ClonesConfig {
            delegate_cert_file: PathBuf::new(),
            delegate_key_file: PathBuf::new(),
            clone_key_file: PathBuf::new(),
            cert_hours: 24,
        }
    }
}

/// One `[[inventory]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct InventoryEntry {
    /// The VM id, or a pattern where `*` stands for any characters
    /// (`clone-*`).
    pub vm: String,
    /// Its policy group (empty: the default policy).
    pub group: String,
    /// Its image: VMs of one image read the verdicts their template's scans
    /// left (empty: none).
    pub image: String,
    /// This VM is the image's template: its verdicts by file identity are
    /// shared with the image's other VMs. Only an exact VM id can be one.
    pub template: bool,
    /// The vsock CID the hypervisor gave this VM: a shim connecting from
    /// it over vsock is this VM, whatever it claims. Only an exact VM id
    /// can have one. Once any entry has a CID, vsock shims from other
    /// CIDs are refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cid: Option<u32>,
}

/// The verdict cache, shared by every VM (within an image, by policy).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Most verdicts kept (0 disables the cache).
    pub max_entries: usize,
    /// Most memory used by the cache, in bytes (estimated).
    pub max_bytes: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: 1_000_000,
            max_bytes: 100 * 1024 * 1024,
        }
    }
}

/// The work-stealing scan pool.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Worker threads (0 = one per core).
    pub workers: usize,
    /// Most scan jobs queued; past it, files get an ERROR verdict saying the
    /// appliance is busy.
    pub queue_capacity: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            workers: 0,
            queue_capacity: 4096,
        }
    }
}

/// The durable outbox of events for the manager.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    /// SQLite file. Empty: `outbox.sqlite` in the state directory
    /// (`/var/lib/giva` as root, else `~/.local/state/giva`). `:memory:`
    /// keeps nothing across restarts.
    pub path: PathBuf,
    /// Most bytes of pending events kept. Past it, low-value events are
    /// dropped first (counted); detections are always kept.
    pub quota_bytes: u64,
    /// Disk space set aside at start (a file beside the outbox,
    /// `<outbox>.reserve`), given back to the outbox when its disk is
    /// full, so that detections can still be committed. 0: none.
    pub reserve_bytes: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            path: PathBuf::new(),
            quota_bytes: 256 * 1024 * 1024,
            reserve_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Listeners and per-stream limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address for shims (gRPC over TCP).
    pub listen: SocketAddr,
    /// A Unix socket for shims on this host, in addition to `listen`
    /// (absent: none). A stale socket file is replaced.
    pub unix_socket: Option<PathBuf>,
    /// A vsock port for guests that reach the host without a network
    /// (absent: none). A shim over vsock is the VM the inventory gives its
    /// CID. (A build with `--no-default-features` has no vsock.)
    pub vsock_port: Option<u32>,
    /// Address of the admin HTTP endpoint (`/metrics`, `/healthz`,
    /// `POST /reload`). Absent: no admin endpoint.
    pub admin_listen: Option<SocketAddr>,
    /// The appliance's TLS certificate (PEM) for the shims' TCP listener;
    /// with it and its key, shims connect with `https://`. Empty: plaintext,
    /// which is allowed on loopback only, unless `insecure_plaintext`.
    pub tls_cert_file: PathBuf,
    /// The certificate's private key (PEM).
    pub tls_key_file: PathBuf,
    /// The CA that signs shims' certificates. With it, a shim on TCP must
    /// show a certificate, and may register only as the VM it names.
    /// A bundle of several CAs is accepted (during a CA rotation).
    pub client_ca_file: PathBuf,
    /// The CAs' revocation lists (PEM): a shim whose certificate, or whose
    /// certificate's issuer, is on one is refused at the handshake. The
    /// certificate, key, client CA and lists are read again on SIGHUP.
    pub crl_file: PathBuf,
    /// Accept plaintext listeners on non-loopback addresses (shims' TCP
    /// listener, admin endpoint). Off: such a listener refuses to start.
    pub insecure_plaintext: bool,
    /// The file holding the token that `POST /reload` needs
    /// (`Authorization: Bearer <token>`); made, mode 0600, at first start.
    /// Empty: `admin.token` in the state directory.
    pub admin_token_file: PathBuf,
    /// Largest gRPC message accepted, in bytes (bounds content chunks and
    /// unary `Scan` buffers).
    pub max_message_bytes: usize,
    /// A file whose content stops arriving for this long gets an ERROR
    /// verdict and its resources are released.
    pub content_timeout_secs: u64,
    /// Files one VM may have in flight at once; beyond it, events get an
    /// ERROR verdict saying the appliance is busy.
    pub max_inflight_per_vm: usize,
    /// Longest path accepted in an event, in bytes.
    pub max_path_len: usize,
    /// VMs registered at once. A VM that registered and never opened its
    /// session is forgotten after `registration_ttl_secs`; past the cap,
    /// `Register` answers RESOURCE_EXHAUSTED. It also bounds the VM list of
    /// a heartbeat (about 1.4 KB a VM, 6 MB for the default), far under
    /// the manager's message limit; at most [`MAX_REGISTERED_VMS`].
    pub max_registered_vms: usize,
    /// Seconds after which a VM that registered but never opened a
    /// session is forgotten.
    pub registration_ttl_secs: u64,
    /// HTTP/2 streams (calls) one connection may have open at once
    /// (`SETTINGS_MAX_CONCURRENT_STREAMS`): a shim needs its session and a
    /// few calls; a client that opens thousands waits (or is refused), and
    /// holds no memory for them.
    pub max_streams_per_connection: u32,
    /// Connections one peer address may hold open at once on the TCP
    /// listener (and one CID on vsock); a connection past it is closed as
    /// soon as it is accepted, before any TLS handshake. A shim needs one.
    /// Loopback counts like any address: raise this when a local
    /// forwarder, or a NAT, carries many guests' connections.
    pub max_connections_per_peer: usize,
    /// Connections held open at once on each listener, all peers together
    /// (held under the process's open-files limit, which the appliance
    /// raises to its hard limit at start).
    pub max_connections: usize,
    /// Content bytes one session may have buffered on their way to its
    /// files' scans; past it the appliance stops reading the session's
    /// stream until a scan takes some (HTTP/2 flow control then holds the
    /// shim). At least one chunk (4 MiB).
    pub max_pending_content_bytes: usize,
    /// Content bytes all sessions together may have received and not yet
    /// scanned: the appliance's memory for content in transit, however
    /// many sessions a flood opens. At least `max_pending_content_bytes`.
    pub max_pending_content_total_bytes: usize,
    /// How long a graceful shutdown may take before in-flight work is dropped.
    pub shutdown_deadline_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7411)),
            admin_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9411))),
            admin_token_file: PathBuf::new(),
            tls_cert_file: PathBuf::new(),
            tls_key_file: PathBuf::new(),
            client_ca_file: PathBuf::new(),
            crl_file: PathBuf::new(),
            insecure_plaintext: false,
            unix_socket: None,
            vsock_port: None,
            max_message_bytes: 8 * 1024 * 1024,
            content_timeout_secs: 30,
            max_inflight_per_vm: 1024,
            max_path_len: 4096,
            max_streams_per_connection: 64,
            max_connections_per_peer: 16,
            max_connections: 8192,
            max_pending_content_bytes: 32 << 20,
            max_pending_content_total_bytes: 512 << 20,
            max_registered_vms: 4096,
            registration_ttl_secs: 600,
            shutdown_deadline_secs: 10,
        }
    }
}

/// Which signatures to load.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Signature files, directories, containers or one compiled database.
    /// Empty: the bundled default database.
    pub paths: Vec<PathBuf>,
    /// How often to check the paths for changes and reload, in seconds
    /// (0 = only on SIGHUP or `POST /reload`).
    pub watch_interval_secs: u64,
    /// Serve with a database that holds no signature (which calls every
    /// file clean). Off: such a database is refused at start and on
    /// reload.
    pub allow_empty: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            paths: Vec::new(),
            watch_interval_secs: 30,
            allow_empty: false,
        }
    }
}

/// Where detections go.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ManagerConfig {
    /// The manager's URL, e.g. `https://manager.example:7412`. Empty: no
    /// manager (detections are only logged). `https://` needs `ca_file`.
    pub url: String,
    /// The CA that signed the manager's certificate.
    pub ca_file: PathBuf,
    /// This appliance's certificate, naming its appliance id, shown to the
    /// manager (which then knows the appliance's calls are its own).
    pub cert_file: PathBuf,
    /// The certificate's key.
    pub key_file: PathBuf,
    /// Seconds between heartbeats.
    pub heartbeat_interval_secs: u64,
    /// Send each detection to the manager at once (false: only with the
    /// next heartbeat, as Deep Security does by default).
    pub notify_immediately: bool,
    /// Timeout of one manager call, in milliseconds.
    pub request_timeout_ms: u64,
    /// `/healthz` answers 503 while a detection (or a completed full scan)
    /// has waited longer than this in the outbox, undelivered.
    pub detection_overdue_secs: u64,
    /// `/healthz` answers 503 while the manager has been unreachable for
    /// longer than this.
    pub unreachable_overdue_secs: u64,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            url: String::new(),
            ca_file: PathBuf::new(),
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
            heartbeat_interval_secs: 600,
            notify_immediately: true,
            request_timeout_ms: 5000,
            detection_overdue_secs: 60,
            unreachable_overdue_secs: 120,
        }
    }
}

/// Scan limits. A file over a limit gets NOT_SCANNED with the limit's name,
/// never a clean verdict.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest file scanned, in bytes (0 = no limit).
    pub max_file_size: u64,
    /// Most bytes scanned per file (0 = no limit).
    pub max_scan_bytes: u64,
    /// Time budget per file, in milliseconds (0 = no limit).
    pub max_scan_time_ms: u64,
    /// Containers opened inside one another (ClamAV's MaxRecursion).
    pub max_recursion: u32,
    /// Members extracted from one file (MaxFiles).
    pub max_files: u64,
    /// Largest member extracted from a file (MaxFileSize).
    pub max_member_size: u64,
    /// Bytes scanned for a container and everything extracted from it
    /// (MaxScanSize).
    pub max_container_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let clamav = giva_content::Limits::default();
        LimitsConfig {
            max_file_size: 512 * 1024 * 1024,
            max_scan_bytes: 0,
            max_scan_time_ms: 60_000,
            max_recursion: clamav.max_recursion,
            max_files: clamav.max_files,
            max_member_size: clamav.max_file_size,
            max_container_bytes: clamav.max_scan_size,
        }
    }
}

/// A policy's own limits (`[groups.NAME.limits]`): each one given
/// replaces the appliance's `[limits]` value for VMs of that policy; the
/// rest are the appliance's.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitOverrides {
    /// See [`LimitsConfig::max_file_size`].
    pub max_file_size: Option<u64>,
    /// See [`LimitsConfig::max_scan_bytes`].
    pub max_scan_bytes: Option<u64>,
    /// See [`LimitsConfig::max_scan_time_ms`].
    pub max_scan_time_ms: Option<u64>,
    /// See [`LimitsConfig::max_recursion`].
    pub max_recursion: Option<u32>,
    /// See [`LimitsConfig::max_files`].
    pub max_files: Option<u64>,
    /// See [`LimitsConfig::max_member_size`].
    pub max_member_size: Option<u64>,
    /// See [`LimitsConfig::max_container_bytes`].
    pub max_container_bytes: Option<u64>,
}

impl LimitOverrides {
    /// `base` with these values in place of its own.
    pub fn over(&self, base: &LimitsConfig) -> LimitsConfig {
        LimitsConfig {
            max_file_size: self.max_file_size.unwrap_or(base.max_file_size),
            max_scan_bytes: self.max_scan_bytes.unwrap_or(base.max_scan_bytes),
            max_scan_time_ms: self.max_scan_time_ms.unwrap_or(base.max_scan_time_ms),
            max_recursion: self.max_recursion.unwrap_or(base.max_recursion),
            max_files: self.max_files.unwrap_or(base.max_files),
            max_member_size: self.max_member_size.unwrap_or(base.max_member_size),
            max_container_bytes: self.max_container_bytes.unwrap_or(base.max_container_bytes),
        }
    }
}

/// Full-scan storm control.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FullScanConfig {
    /// VMs that may run a full scan at the same time on this host.
    pub max_concurrent: usize,
    /// Ask every connected VM for a full scan this often, in hours
    /// (0 = no scheduled scans).
    pub every_hours: u64,
    /// Each VM's scheduled scan starts at a random point within this many
    /// minutes after the schedule fires, so VMs do not start together.
    pub window_minutes: u64,
}

impl Default for FullScanConfig {
    fn default() -> Self {
        FullScanConfig {
            max_concurrent: 2,
            every_hours: 0,
            window_minutes: 60,
        }
    }
}

/// The policy for VMs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Scan files when opened.
    pub scan_on_open: bool,
    /// Scan files when executed.
    pub scan_on_exec: bool,
    /// Scan files after they are written.
    pub scan_on_close_write: bool,
    /// Allow access when no verdict arrives in time (false: deny).
    pub fail_open: bool,
    /// How long a guest access may wait for a verdict, in milliseconds.
    pub decision_timeout_ms: u32,
    /// Path prefixes not scanned.
    pub exclude_prefixes: Vec<String>,
    /// Glob patterns (`*`, `?`) on the full path not scanned.
    pub exclude_globs: Vec<String>,
    /// File extensions (no dot, case-insensitive) not scanned.
    pub exclude_extensions: Vec<String>,
    /// Deny access on detection (false: report only).
    pub deny_on_detection: bool,
    /// Send detections to the manager at once (false: with the next
    /// heartbeat only, Deep Security's default behaviour).
    pub notify_immediately: bool,
    /// Share cached verdicts with other VMs of the same image.
    pub share_cache: bool,
    /// What an ordered full scan walks in the guest. A scan that walks
    /// anything else does not release a quarantined VM.
    pub full_scan_roots: Vec<String>,
    /// Limits of this policy's own, over the appliance's `[limits]`.
    pub limits: LimitOverrides,
    /// A file not scanned whole because of a limit is a detection
    /// (`Heuristics.Limits.Exceeded.*`, as `clamscan --alert-exceeds-max`),
    /// denied and reported, rather than NOT_SCANNED.
    pub alert_exceeds_max: bool,
    /// A file with an encrypted member is a detection
    /// (`Heuristics.Encrypted.Archive`, as `clamscan --alert-encrypted`).
    pub alert_encrypted: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            scan_on_open: true,
            scan_on_exec: true,
            scan_on_close_write: true,
            fail_open: true,
            decision_timeout_ms: 5000,
            exclude_prefixes: vec!["/proc/".into(), "/sys/".into(), "/dev/".into()],
            exclude_globs: Vec::new(),
            exclude_extensions: Vec::new(),
            deny_on_detection: true,
            notify_immediately: true,
            share_cache: true,
            full_scan_roots: vec!["/".into()],
            limits: LimitOverrides::default(),
            alert_exceeds_max: false,
            alert_encrypted: false,
        }
    }
}

/// The most VMs one appliance may have registered: a heartbeat lists them
/// all, at most about 1.4 KB each (five fields of at most 256 bytes), and
/// must stay under the manager's 64 MiB message limit with room to spare.
pub const MAX_REGISTERED_VMS: usize = 32_768;

/// A configuration option out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option} must be {}{}", if *max == u64::MAX { format!("at least {min}") } else { format!("from {min} to {max}") }, why.map(|w| format!(" ({w})")).unwrap_or_default())]
pub struct InvalidOption {
    /// The option, as `section.key`.
    pub option: &'static str,
    /// Its smallest valid value.
    pub min: u64,
    /// Its largest valid value (`u64::MAX`: none).
    pub max: u64,
    /// Why the range is what it is, where that is not plain.
    pub why: Option<&'static str>,
}

impl Config {
    /// Reads and validates a TOML configuration file.
    ///
    /// # Errors
    ///
    /// The file cannot be read, is not valid TOML, has unknown keys, or holds
    /// an invalid value; the message names the file and the problem.
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        let config: Config = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("invalid config {}: {e}", path.display()))?;
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid config {}: {e}", path.display()))?;
        Ok(config)
    }

    /// Checks values that TOML types cannot.
    ///
    /// # Errors
    ///
    /// [`InvalidOption`] naming the first invalid option.
    pub fn validate(&self) -> Result<(), InvalidOption> {
        if self.server.max_registered_vms > MAX_REGISTERED_VMS {
            return Err(InvalidOption {
                option: "server.max_registered_vms",
                min: 1,
                max: MAX_REGISTERED_VMS as u64,
                why: Some(
                    "a heartbeat lists every registered VM, and past this it could pass the manager's 64 MiB message limit",
                ),
            });
        }
        let server = &self.server;
        // (option, value, smallest valid value)
        let minimums: [(&'static str, u64, u64); 11] = [
            (
                "manager.heartbeat_interval_secs",
                self.manager.heartbeat_interval_secs,
                1,
            ),
            (
                "full_scan.max_concurrent",
                self.full_scan.max_concurrent as u64,
                1,
            ),
            (
                "server.max_inflight_per_vm",
                server.max_inflight_per_vm as u64,
                1,
            ),
            (
                "server.max_registered_vms",
                server.max_registered_vms as u64,
                1,
            ),
            (
                "server.registration_ttl_secs",
                server.registration_ttl_secs,
                1,
            ),
            (
                "server.max_streams_per_connection",
                u64::from(server.max_streams_per_connection),
                2,
            ),
            (
                "server.max_connections_per_peer",
                server.max_connections_per_peer as u64,
                1,
            ),
            ("server.max_connections", server.max_connections as u64, 1),
            (
                "server.max_pending_content_bytes",
                server.max_pending_content_bytes as u64,
                4 << 20,
            ),
            (
                "server.max_pending_content_total_bytes",
                server.max_pending_content_total_bytes as u64,
                server.max_pending_content_bytes as u64,
            ),
            (
                "server.max_message_bytes",
                server.max_message_bytes as u64,
                64 * 1024,
            ),
        ];
        match minimums.into_iter().find(|&(_, value, min)| value < min) {
            Some((option, _, min)) => Err(InvalidOption {
                option,
                min,
                max: u64::MAX,
                why: None,
            }),
            None => Ok(()),
        }
    }

    /// The configuration as TOML (for `--print-config`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// The effective outbox file.
    pub fn outbox_path(&self) -> PathBuf {
        if self.outbox.path.as_os_str().is_empty() {
            giva_runtime::dirs::state_dir("giva").join("outbox.sqlite")
        } else {
            self.outbox.path.clone()
        }
    }

    /// Where large members of containers are spooled (unlinked temporary
    /// files): `spool/` beside the outbox, in the appliance's data dir
    /// rather than a `/tmp` that may be memory. `None` with an outbox in
    /// memory: the system's temporary directory.
    pub fn spool_dir(&self) -> Option<PathBuf> {
        let outbox = self.outbox_path();
        (outbox.as_os_str() != ":memory:").then(|| outbox.with_file_name("spool"))
    }

    /// Where used clone-token nonces are kept: beside the outbox (`None`
    /// with an outbox in memory).
    pub fn clone_nonce_journal(&self) -> Option<PathBuf> {
        let outbox = self.outbox_path();
        (outbox.as_os_str() != ":memory:").then(|| outbox.with_file_name("clone-nonces"))
    }

    /// The effective admin token file.
    pub fn admin_token_path(&self) -> PathBuf {
        if self.server.admin_token_file.as_os_str().is_empty() {
            giva_runtime::dirs::state_dir("giva").join("admin.token")
        } else {
            self.server.admin_token_file.clone()
        }
    }

    /// The effective appliance id.
    pub fn effective_appliance_id(&self) -> String {
        if !self.appliance_id.is_empty() {
            return self.appliance_id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        format!("giva-{host}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_ranges_are_named() {
        assert_eq!(Config::default().validate(), Ok(()));
        let mut c = Config::default();
        c.server.max_registered_vms = MAX_REGISTERED_VMS + 1;
        let e = c.validate().expect_err("past the heartbeat's bound");
        assert_eq!(e.option, "server.max_registered_vms");
        assert!(e.to_string().contains("from 1 to 32768"), "{e}");
        assert!(e.to_string().contains("64 MiB"), "{e}");
        let mut c = Config::default();
        c.server.max_pending_content_bytes = (4 << 20) - 1;
        let e = c.validate().expect_err("under one chunk");
        assert_eq!(
            e.to_string(),
            "server.max_pending_content_bytes must be at least 4194304"
        );
        let mut c = Config::default();
        c.server.max_connections_per_peer = 0;
        assert_eq!(
            c.validate().map_err(|e| e.option),
            Err("server.max_connections_per_peer")
        );
    }
}
