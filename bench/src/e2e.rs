//! `bench e2e`: the manager, the appliance and `giva-shim load` as real
//! processes (release binaries) on loopback.
//!
//! Measured:
//! - **Instant-clone storm**: N VMs (default 500) of one image register at
//!   once and open every file of the image. Events/s and verdict latency
//!   come from `giva-shim load --json`; the bytes the appliance really
//!   scanned come from its `/metrics` (`giva_scanned_bytes_total`) and are
//!   compared with one image's size (target ≤ 1.1×).
//! - **Detection → manager**, immediate: every EICAR file in the image is a
//!   detection in every VM; `giva-manager events --json` gives `delay_ms`
//!   (manager commit − appliance detection, one clock).
//! - **Detection → manager**, heartbeat only: the same with a fresh manager
//!   and an appliance configured with `notify_immediately = false` and a
//!   short heartbeat.
//! - **Cache misses and hits by file size** (4 KiB, 64 KiB, 1 MiB): one VM
//!   opens a fresh image (every open a miss), then 1, 10 and 200 VMs open it
//!   again (every open a hit, the cache is shared across clones of an
//!   image). Misses of 64 KiB text and HTML files too: those the appliance
//!   keeps and scans again normalized.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::latest::{Row, Summary};
use crate::report::{Percentiles, percentiles};
use crate::rng::Rng;

const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// What to run.
#[derive(Debug, Clone)]
pub struct E2eArgs {
    /// Directory of the release binaries.
    pub bin_dir: PathBuf,
    /// Scratch directory.
    pub work: PathBuf,
    /// VMs in the storm.
    pub storm_vms: usize,
    /// Events per second offered in the storm's open-loop runs.
    pub storm_rate: f64,
    /// VM counts for the cache-hit runs.
    pub hit_vms: Vec<usize>,
    /// Heartbeat interval of the heartbeat-only run, seconds.
    pub heartbeat_secs: u64,
    /// Limit of each load run, seconds.
    pub duration_secs: u64,
    /// Extra database (`-d`) for the appliance; default the bundled one.
    pub db: Option<PathBuf>,
    /// Sections to run; empty: all.
    pub only: Vec<Section>,
}

/// A section of the e2e run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// The instant-clone storms (TLS and plaintext) and detection latency.
    Storm,
    /// Cache misses and hits by file size.
    Cache,
    /// Detection → manager with the heartbeat only.
    Heartbeat,
}

impl E2eArgs {
    fn runs(&self, s: Section) -> bool {
        self.only.is_empty() || self.only.contains(&s)
    }
}

/// A child process killed (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
struct Proc {
    child: Child,
    name: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        crate::run::kill_group(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} did not stop within 15 s; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(name: &str, prog: &Path, args: &[String], log: &Path) -> anyhow::Result<Proc> {
    use std::os::unix::process::CommandExt;
    let child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log)?)
        .stderr(std::fs::File::create(log.with_extension("err"))?)
        .process_group(0)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", prog.display()))?;
    Ok(Proc {
        child,
        name: name.into(),
    })
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn wait_tcp(addr: SocketAddr, p: &mut Proc, timeout: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(st)) = p.child.try_wait() {
            anyhow::bail!("{} exited early ({st})", p.name);
        }
        if start.elapsed() > timeout {
            anyhow::bail!("{} did not listen on {addr} within {timeout:?}", p.name);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET path` over HTTP/1.1 on loopback; returns the body.
fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out
        .split_once("\r\n\r\n")
        .map_or(out.clone(), |(_, b)| b.to_string()))
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.split(['{', ' ']).next() == Some(name))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

struct Stack {
    manager_url: String,
    /// The operator token `giva-manager events` reads.
    manager_token: PathBuf,
    appliance_url: String,
    /// With identity and TLS on: the CAs to trust, and the clone key the
    /// load generator's clones get their tokens from.
    secure: Option<(PathBuf, PathBuf)>,
    admin: SocketAddr,
    // Dropped in reverse order of declaration: appliance first.
    _appliance: Proc,
    _manager: Proc,
}

/// An appliance inventory entry: VM id or pattern, image, template.
type Placement = (String, String, bool);

/// The inventory that makes `{image}-{template}` the template of `image`
/// and every other `{image}-*` VM one of its clones.
fn image_inventory(image: &str, template: &str) -> Vec<Placement> {
    vec![
        (format!("{image}-{template}"), image.to_string(), true),
        (format!("{image}-*"), image.to_string(), false),
    ]
}

/// Runs `giva-manager ca --db DB ARGS`.
fn ca(a: &E2eArgs, db: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(a.bin_dir.join("giva-manager"))
        .args(["ca", "--db"])
        .arg(db)
        .args(args)
        .output()?;
    if !out.status.success() {
        anyhow::bail!(
            "giva-manager ca {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The certificates of a stack with identity and TLS on, made with the
/// manager's CA: the manager's, the appliance's with its delegated CA, and
/// the clone key.
struct Pki {
    ca: PathBuf,
    crl: PathBuf,
    tls: PathBuf,
}

fn make_pki(a: &E2eArgs, dir: &Path, appliance_id: &str) -> anyhow::Result<Pki> {
    let db = dir.join("manager.sqlite");
    let pki = dir.join("pki");
    let tls = dir.join("tls");
    let (p, t) = (pki.display().to_string(), tls.display().to_string());
    ca(a, &db, &["init", "--dir", &p])?;
    ca(
        a,
        &db,
        &[
            "issue",
            "manager",
            "--role",
            "server",
            "--ip",
            "127.0.0.1",
            "--out",
            &t,
        ],
    )?;
    ca(
        a,
        &db,
        &[
            "issue",
            appliance_id,
            "--role",
            "appliance",
            "--ip",
            "127.0.0.1",
            "--out",
            &t,
            "--delegate",
        ],
    )?;
    Ok(Pki {
        ca: pki.join("ca.pem"),
        crl: pki.join("crl.pem"),
        tls,
    })
}

/// Sets `table.key` in a TOML document to a path.
fn set_path(doc: &mut toml::Table, table: &str, key: &str, path: &Path) {
    if let Some(toml::Value::Table(t)) = doc.get_mut(table) {
        t.insert(key.into(), toml::Value::String(path.display().to_string()));
    }
}

fn start_stack(
    a: &E2eArgs,
    dir: &Path,
    immediate: bool,
    inventory: &[Placement],
    secure: bool,
) -> anyhow::Result<Stack> {
    std::fs::create_dir_all(dir)?;
    let appliance_id = "bench-e2e";
    let pki = if secure {
        Some(make_pki(a, dir, appliance_id)?)
    } else {
        None
    };
    let scheme = if secure { "https" } else { "http" };
    let maddr = free_port()?;
    let mut margs: Vec<String> = vec![
        "serve".into(),
        "--listen".into(),
        maddr.to_string(),
        "--db".into(),
        dir.join("manager.sqlite").display().to_string(),
        "--token-file".into(),
        dir.join("operator.token").display().to_string(),
        "--no-admin".into(),
    ];
    if let Some(p) = &pki {
        for (flag, path) in [
            ("--tls-cert", p.tls.join("manager.pem")),
            ("--tls-key", p.tls.join("manager.key")),
            ("--client-ca", p.ca.clone()),
            ("--crl", p.crl.clone()),
        ] {
            margs.extend([flag.to_string(), path.display().to_string()]);
        }
    }
    let mut manager = spawn(
        "giva-manager",
        &a.bin_dir.join("giva-manager"),
        &margs,
        &dir.join("manager.log"),
    )?;
    wait_tcp(maddr, &mut manager, Duration::from_secs(30))?;
    let aaddr = free_port()?;
    let admin = free_port()?;
    let giva = a.bin_dir.join("giva");
    let mut args = vec![
        "serve".to_string(),
        "--listen".into(),
        aaddr.to_string(),
        "--manager".into(),
        format!("{scheme}://{maddr}"),
        "--admin-listen".into(),
        admin.to_string(),
        "--data-dir".into(),
        dir.display().to_string(),
        "--heartbeat-interval".into(),
        (if immediate { 600 } else { a.heartbeat_secs }).to_string(),
    ];
    if let Some(db) = &a.db {
        args.extend(["-d".to_string(), db.display().to_string()]);
    }
    // The effective configuration, with immediate notification switched
    // off for the heartbeat-only run (there is no command-line flag).
    let mut pc = args.clone();
    pc.push("--print-config".into());
    let out = Command::new(&giva).args(&pc).output()?;
    if !out.status.success() {
        anyhow::bail!(
            "giva serve --print-config: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut toml = String::from_utf8_lossy(&out.stdout)
        .replace("appliance_id = \"\"", "appliance_id = \"bench-e2e\"");
    if !immediate {
        toml = toml.replace("notify_immediately = true", "notify_immediately = false");
    }
    // Every simulated VM connects from loopback (with identity on, each on
    // a connection of its own): the per-address cap would hold them to 16.
    toml = toml.replace(
        "max_connections_per_peer = 16",
        "max_connections_per_peer = 4096",
    );
    // The inventory: which VM is each image's template (clones share only
    // a template's verdicts).
    let entries: Vec<String> = inventory
        .iter()
        .map(|(vm, image, template)| {
            format!("{{ vm = \"{vm}\", image = \"{image}\", template = {template} }}")
        })
        .collect();
    toml = toml.replace(
        "inventory = []",
        &format!("inventory = [{}]", entries.join(", ")),
    );
    if let Some(p) = &pki {
        // Identity and TLS on every link: the manager's CA, the
        // appliance's certificate for both ends, shims' certificates
        // required, and clones signed here.
        let mut doc: toml::Table = toml::from_str(&toml)?;
        let cert = p.tls.join(format!("{appliance_id}.pem"));
        let key = p.tls.join(format!("{appliance_id}.key"));
        set_path(&mut doc, "manager", "ca_file", &p.ca);
        set_path(&mut doc, "manager", "cert_file", &cert);
        set_path(&mut doc, "manager", "key_file", &key);
        set_path(&mut doc, "server", "tls_cert_file", &cert);
        set_path(&mut doc, "server", "tls_key_file", &key);
        set_path(&mut doc, "server", "client_ca_file", &p.ca);
        set_path(&mut doc, "server", "crl_file", &p.crl);
        let delegate = p.tls.join(format!("{appliance_id}-delegate"));
        set_path(
            &mut doc,
            "clones",
            "delegate_cert_file",
            &delegate.with_extension("pem"),
        );
        set_path(
            &mut doc,
            "clones",
            "delegate_key_file",
            &delegate.with_extension("key"),
        );
        set_path(
            &mut doc,
            "clones",
            "clone_key_file",
            &p.tls.join("clone.key"),
        );
        toml = toml::to_string(&doc)?;
    }
    let conf = dir.join("appliance.toml");
    std::fs::write(&conf, toml)?;
    let mut appliance = spawn(
        "giva serve",
        &giva,
        &[
            "serve".into(),
            "--config".into(),
            conf.display().to_string(),
        ],
        &dir.join("appliance.log"),
    )?;
    wait_tcp(aaddr, &mut appliance, Duration::from_secs(120))?;
    wait_tcp(admin, &mut appliance, Duration::from_secs(30))?;
    Ok(Stack {
        manager_url: format!("{scheme}://{maddr}"),
        manager_token: dir.join("operator.token"),
        appliance_url: format!("{scheme}://{aaddr}"),
        secure: pki.map(|p| (p.ca, p.tls.join("clone.key"))),
        admin,
        _appliance: appliance,
        _manager: manager,
    })
}

/// Writes an image directory: `files` files of `size` bytes (random), plus
/// `eicar` EICAR files.
fn make_image(
    dir: &Path,
    seed: u64,
    files: usize,
    size: usize,
    eicar: usize,
) -> anyhow::Result<u64> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let mut rng = Rng::new(seed, 7 << 40);
    let mut total = 0u64;
    for i in 0..files {
        let data = rng.bytes(size);
        std::fs::write(dir.join(format!("file-{i:05}.bin")), &data)?;
        total += size as u64;
    }
    for i in 0..eicar {
        std::fs::write(dir.join(format!("eicar-{i}.com")), EICAR)?;
        total += EICAR.len() as u64;
    }
    Ok(total)
}

/// Writes an image directory of `files` distinct text files (or HTML
/// pages, with `html`) of about `size` bytes.
fn make_text_image(
    dir: &Path,
    seed: u64,
    files: usize,
    size: usize,
    html: bool,
) -> anyhow::Result<u64> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let mut rng = Rng::new(seed, 11 << 40);
    let mut total = 0u64;
    for i in 0..files {
        let mut text = vec![0u8; size];
        crate::corpus::text_fill(&mut rng, &mut text);
        let (name, data) = if html {
            let mut page = b"<html><head><title>Page</title></head><body>\n<p>".to_vec();
            for &b in &text {
                match b {
                    b'\n' => page.extend_from_slice(b"</p>\n<p>"),
                    b',' => page.extend_from_slice(b" &amp;"),
                    _ => page.push(b),
                }
            }
            page.extend_from_slice(b"</p></body></html>\n");
            (format!("page-{i:05}.html"), page)
        } else {
            (format!("text-{i:05}.txt"), text)
        };
        total += data.len() as u64;
        std::fs::write(dir.join(name), &data)?;
    }
    Ok(total)
}

/// The result of one `giva-shim load` run.
#[derive(Debug, Clone)]
pub struct LoadRun {
    /// What ran.
    pub label: String,
    /// The load generator's JSON report.
    pub report: Value,
    /// Wall time of the run.
    pub wall_s: f64,
}

impl LoadRun {
    fn f(&self, k: &str) -> f64 {
        self.report
            .get(k)
            .and_then(Value::as_f64)
            .unwrap_or(f64::NAN)
    }
    fn lat(&self, k: &str, p: &str) -> f64 {
        self.report
            .get(k)
            .and_then(|v| v.get(p))
            .and_then(Value::as_f64)
            .unwrap_or(f64::NAN)
    }
}

/// One `giva-shim load` run: the image's VMs, first its template, closed
/// loop or offered a rate.
struct Run<'a> {
    label: String,
    image: &'a Path,
    image_id: &'a str,
    vms: usize,
    template: bool,
    rate: Option<f64>,
}

impl<'a> Run<'a> {
    fn new(label: impl Into<String>, image: &'a Path, image_id: &'a str, vms: usize) -> Self {
        Run {
            label: label.into(),
            image,
            image_id,
            vms,
            template: false,
            rate: None,
        }
    }
    fn template(self) -> Self {
        Run {
            template: true,
            ..self
        }
    }
    fn rate(self, rate: f64) -> Self {
        Run {
            rate: Some(rate),
            ..self
        }
    }
}

fn load(a: &E2eArgs, stack: &Stack, run: Run<'_>) -> anyhow::Result<LoadRun> {
    let Run {
        label,
        image,
        image_id,
        vms,
        template,
        rate,
    } = run;
    eprintln!("  load: {label} ({vms} VMs) …");
    let start = Instant::now();
    let out = Command::new(a.bin_dir.join("giva-shim"))
        .args([
            "load",
            "--appliance",
            &stack.appliance_url,
            "--vms",
            &vms.to_string(),
            "--image",
            &image.display().to_string(),
            "--image-id",
            image_id,
            "--vm-prefix",
            image_id,
            "--duration",
            &a.duration_secs.to_string(),
            "--json",
        ])
        .args(template.then_some("--template"))
        .args(
            rate.iter()
                .flat_map(|r| ["--rate".to_string(), r.to_string()]),
        )
        .args(stack.secure.iter().flat_map(|(ca, key)| {
            [
                "--ca-file".into(),
                ca.as_os_str().to_owned(),
                "--clone-key".into(),
                key.as_os_str().to_owned(),
            ]
        }))
        .stdin(Stdio::null())
        .output()?;
    let wall_s = start.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(text.trim()).map_err(|e| {
        anyhow::anyhow!(
            "giva-shim load gave no JSON report ({e}); exit {:?}; stderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join(" / ")
        )
    })?;
    let r = LoadRun {
        label,
        report,
        wall_s,
    };
    eprintln!(
        "    {:.0} events/s, verdict p50 {:.3} ms p99 {:.3} ms, {} cache hits, content {:.2}× image",
        r.f("events_per_sec"),
        r.lat("verdict_latency", "p50_ms"),
        r.lat("verdict_latency", "p99_ms"),
        r.f("cache_hits"),
        r.f("content_per_image")
    );
    Ok(r)
}

fn detection_delays(a: &E2eArgs, stack: &Stack) -> anyhow::Result<Vec<f64>> {
    let out = Command::new(a.bin_dir.join("giva-manager"))
        .args([
            "events",
            "--manager",
            &stack.manager_url,
            "--json",
            "--token-file",
        ])
        .arg(&stack.manager_token)
        .args(
            stack
                .secure
                .iter()
                .flat_map(|(ca, _)| ["--ca-file".into(), ca.as_os_str().to_owned()]),
        )
        .output()?;
    if !out.status.success() {
        anyhow::bail!(
            "giva-manager events: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("kind").and_then(Value::as_str) == Some("detection"))
        .filter_map(|v| v.get("delay_ms").and_then(Value::as_f64))
        .collect())
}

/// Everything an e2e run measured.
#[derive(Debug, Clone, Default)]
pub struct E2eResult {
    /// Load runs.
    pub runs: Vec<LoadRun>,
    /// Storm: image bytes, bytes scanned by the appliance.
    pub storm_bytes: Option<(u64, f64)>,
    /// Detection → manager, immediate.
    pub immediate: Option<Percentiles>,
    /// Detection → manager, heartbeat only.
    pub heartbeat: Option<Percentiles>,
    /// Heartbeat interval used.
    pub heartbeat_secs: u64,
    /// Notes.
    pub notes: Vec<String>,
}

/// Runs the end-to-end measurements.
///
/// # Errors
///
/// A binary is missing or a service does not start.
pub fn run(a: &E2eArgs) -> anyhow::Result<E2eResult> {
    for b in ["giva", "giva-shim", "giva-manager"] {
        if !a.bin_dir.join(b).is_file() {
            anyhow::bail!(
                "{} not found: build with `cargo build --release -p giva-appliance -p giva-shim -p giva-manager`",
                a.bin_dir.join(b).display()
            );
        }
    }
    let mut res = E2eResult {
        heartbeat_secs: a.heartbeat_secs,
        ..Default::default()
    };
    let _ = std::fs::remove_dir_all(&a.work);
    std::fs::create_dir_all(&a.work)?;
    let work = a.work.canonicalize()?;

    // 1. Storm + immediate detection latency.
    if a.runs(Section::Storm) {
        storm(a, &work, &mut res)?;
    }
    // 2. Cache misses and hits by size.
    if a.runs(Section::Cache) {
        cache(a, &work, &mut res)?;
    }
    // 3. Heartbeat only.
    if a.runs(Section::Heartbeat) {
        heartbeat(a, &work, &mut res)?;
    }
    Ok(res)
}

fn storm(a: &E2eArgs, work: &Path, res: &mut E2eResult) -> anyhow::Result<()> {
    eprintln!("== instant-clone storm");
    let image = work.join("image-storm");
    // A small desktop-like image: 4 KiB .. 1 MiB files and two EICARs.
    let _ = std::fs::remove_dir_all(&image);
    std::fs::create_dir_all(&image)?;
    let mut image_bytes = 0u64;
    for (n, size) in [(100usize, 4usize << 10), (30, 64 << 10), (8, 1 << 20)] {
        let sub = image.join(format!("s{size}"));
        image_bytes += make_image(&sub, size as u64, n, size, 0)?;
    }
    image_bytes += make_image(&image.join("eicar"), 0, 0, 0, 2)?;
    let id = "storm-image";
    let offered = |how: &str| {
        Run::new(
            format!(
                "storm: {} VMs of one image ({how}), {:.0} events/s offered",
                a.storm_vms, a.storm_rate
            ),
            &image,
            id,
            a.storm_vms,
        )
        .template()
        .rate(a.storm_rate)
    };
    let capacity = |how: &str| {
        Run::new(
            format!(
                "storm capacity: {} VMs of one image ({how}), closed loop",
                a.storm_vms
            ),
            &image,
            id,
            a.storm_vms,
        )
        .template()
    };
    {
        // The template (storm-image-0000) goes first, as a running parent
        // would have; the clones then share its verdicts.
        let inventory = image_inventory(id, "0000");
        // Identity and TLS on: each clone enrolls with a clone token and
        // connects with a certificate of its own.
        let stack = start_stack(a, &work.join("stack-storm"), true, &inventory, true)?;
        let before = http_get(stack.admin, "/metrics")
            .ok()
            .and_then(|m| metric(&m, "giva_scanned_bytes_total"))
            .unwrap_or(0.0);
        let r = load(a, &stack, offered(TLS_STORM))?;
        std::thread::sleep(Duration::from_millis(500));
        let metrics = http_get(stack.admin, "/metrics")?;
        match metric(&metrics, "giva_scanned_bytes_total") {
            Some(after) => res.storm_bytes = Some((image_bytes, after - before)),
            None => res
                .notes
                .push("the appliance's /metrics has no giva_scanned_bytes_total".into()),
        }
        res.runs.push(r);
        // Detections reach the manager immediately; give stragglers a moment.
        let expected = a.storm_vms * 2;
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut delays = detection_delays(a, &stack)?;
        while delays.len() < expected && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
            delays = detection_delays(a, &stack)?;
        }
        if delays.len() < expected {
            res.notes.push(format!(
                "immediate: {} of {expected} detections reached the manager within 30 s of the end of the storm",
                delays.len()
            ));
        }
        if !delays.is_empty() {
            res.immediate = Some(percentiles(&mut delays));
        }
        // The same clones again, as fast as the appliance answers: how
        // much a storm can offer before verdicts queue.
        res.runs.push(load(a, &stack, capacity(TLS_STORM))?);
    }

    // 1b. The same storm without identity or TLS, on connections the VMs
    // share: what identity costs.
    {
        let inventory = image_inventory(id, "0000");
        let stack = start_stack(a, &work.join("stack-storm-plain"), true, &inventory, false)?;
        res.runs.push(load(a, &stack, offered(PLAIN_STORM))?);
        res.runs.push(load(a, &stack, capacity(PLAIN_STORM))?);
    }
    Ok(())
}

/// How the storm's VMs connect, as the run labels say it.
const TLS_STORM: &str = "TLS, a certificate per clone";
const PLAIN_STORM: &str = "plaintext, shared connections";

fn cache(a: &E2eArgs, work: &Path, res: &mut E2eResult) -> anyhow::Result<()> {
    eprintln!("== cache misses and hits by file size");
    {
        // Each image's first VM is its template: the miss run (one VM) is
        // the template scanning cold; the hit runs' clones share its
        // verdicts.
        let sizes = [(4usize << 10, 400usize), (64 << 10, 200), (1 << 20, 40)];
        let inventory: Vec<Placement> = sizes
            .iter()
            .map(|(size, _)| format!("img-{size}"))
            .chain(["img-text".to_string(), "img-html".to_string()])
            .flat_map(|id| image_inventory(&id, "0001"))
            .collect();
        let stack = start_stack(a, &work.join("stack-cache"), true, &inventory, false)?;
        for (size, n) in sizes {
            let label = match size {
                s if s >= 1 << 20 => format!("{} MiB", s >> 20),
                s => format!("{} KiB", s >> 10),
            };
            let img = work.join(format!("image-{size}"));
            make_image(&img, 100 + size as u64, n, size, 0)?;
            let id = format!("img-{size}");
            let r = load(
                a,
                &stack,
                Run::new(format!("miss {label}: 1 VM, {n} files"), &img, &id, 1),
            )?;
            res.runs.push(r);
            for &vms in &a.hit_vms {
                let r = load(
                    a,
                    &stack,
                    Run::new(
                        format!("hit {label}: {vms} VMs, {n} files each"),
                        &img,
                        &id,
                        vms,
                    ),
                )?;
                res.runs.push(r);
            }
        }
        // Text and HTML: each file kept and scanned a second time
        // normalized (HTML twice: its page and its text).
        for (kind, html) in [("text", false), ("html", true)] {
            let n = 200;
            let img = work.join(format!("image-{kind}"));
            make_text_image(&img, 300, n, 64 << 10, html)?;
            let id = format!("img-{kind}");
            let r = load(
                a,
                &stack,
                Run::new(format!("miss {kind} 64 KiB: 1 VM, {n} files"), &img, &id, 1),
            )?;
            res.runs.push(r);
        }
    }

    Ok(())
}

fn heartbeat(a: &E2eArgs, work: &Path, res: &mut E2eResult) -> anyhow::Result<()> {
    eprintln!(
        "== detection → manager, heartbeat only ({} s)",
        a.heartbeat_secs
    );
    {
        let inventory = image_inventory("hb-image", "0000");
        let stack = start_stack(a, &work.join("stack-heartbeat"), false, &inventory, false)?;
        let img = work.join("image-eicar");
        make_image(&img, 1, 20, 4096, 2)?;
        let vms = 50;
        let r = load(
            a,
            &stack,
            Run::new(format!("heartbeat-only: {vms} VMs"), &img, "hb-image", vms).template(),
        )?;
        res.runs.push(r);
        let expected = vms * 2;
        let deadline = Instant::now() + Duration::from_secs(a.heartbeat_secs * 2 + 30);
        let mut delays = detection_delays(a, &stack)?;
        while delays.len() < expected && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
            delays = detection_delays(a, &stack)?;
        }
        if delays.len() < expected {
            res.notes.push(format!(
                "heartbeat-only: {} of {expected} detections arrived",
                delays.len()
            ));
        }
        if !delays.is_empty() {
            res.heartbeat = Some(percentiles(&mut delays));
        }
    }
    Ok(())
}

/// What the e2e rows were measured on.
const E2E_SETUP: &str = "Real processes on loopback: `giva-manager serve`, `giva serve` (bundled database) and `giva-shim load`; latencies from event sent to verdict received. The storm runs with identity and TLS on (each clone enrolls with a clone token, gets a certificate the appliance signs, and connects with it; mTLS to the manager), and once more in plaintext for comparison; each runs open loop at a stated rate (the target) and closed loop (capacity). The load generator shares the machine's two cores with the appliance: at 200 VMs it drives about 250,000 verdicts a second, and those latencies include queueing on saturated cores.";

impl E2eResult {
    /// The headline rows for `LATEST.md`: cache-hit verdict latency, the
    /// instant-clone storm and detection → manager latency.
    pub fn summary(&self, command: &str) -> Summary {
        let mut s = Summary::new(
            "e2e",
            "End to end: manager, appliance and shims as processes",
            command,
            "e2e.md",
        );
        s.setup = E2E_SETUP.into();
        for r in self.runs.iter().filter(|r| r.label.starts_with("hit ")) {
            let p99 = r.lat("verdict_latency", "p99_ms");
            s.rows.push(Row {
                measure: format!("cache-hit verdict p99, {}", r.label),
                giva: format!("{p99:.3} ms"),
                peer: String::new(),
                ratio: String::new(),
                target: "< 1 ms".into(),
                met: Some(p99 < 1.0),
            });
        }
        let find = |prefix: &str, how: &str| {
            self.runs
                .iter()
                .find(|r| r.label.starts_with(prefix) && r.label.contains(how))
        };
        let p99 = |r: &LoadRun| r.lat("verdict_latency", "p99_ms");
        if let Some(r) = find("storm:", TLS_STORM) {
            s.rows.push(Row {
                measure: format!(
                    "instant-clone storm ({TLS_STORM}), {:.0} events/s offered: verdict p99",
                    r.f("offered_rate")
                ),
                giva: format!("{:.2} ms", p99(r)),
                peer: find("storm:", PLAIN_STORM)
                    .map_or(String::new(), |p| format!("plaintext: {:.2} ms", p99(p))),
                ratio: String::new(),
                target: "< 10 ms".into(),
                met: Some(p99(r) < 10.0),
            });
            s.rows.push(Row {
                measure: "instant-clone storm: registration p99 (clone token, appliance-signed certificate, handshake, Register; no manager round trip)".into(),
                giva: format!("{:.0} ms", r.lat("register_latency", "p99_ms")),
                peer: find("storm:", PLAIN_STORM).map_or(String::new(), |p| {
                    format!("plaintext: {:.0} ms", p.lat("register_latency", "p99_ms"))
                }),
                ratio: String::new(),
                target: String::new(),
                met: None,
            });
        }
        if let Some(r) = find("storm capacity:", TLS_STORM) {
            let cap = |r: &LoadRun| {
                format!(
                    "{:.0} events/s, p99 {:.1} ms",
                    r.f("events_per_sec"),
                    p99(r)
                )
            };
            s.rows.push(Row {
                measure: "instant-clone storm capacity (closed loop, cores shared with the load generator)".into(),
                giva: cap(r),
                peer: find("storm capacity:", PLAIN_STORM)
                    .map_or(String::new(), |p| format!("plaintext: {}", cap(p))),
                ratio: String::new(),
                target: String::new(),
                met: None,
            });
        }
        if let Some((image, scanned)) = self.storm_bytes {
            let x = scanned / image as f64;
            s.rows.push(Row {
                measure: "instant-clone storm: bytes scanned per image".into(),
                giva: format!("{x:.2}× one image"),
                peer: String::new(),
                ratio: String::new(),
                target: "≤ 1.1×".into(),
                met: Some(x <= 1.1),
            });
        }
        if let Some(p) = self.immediate {
            s.rows.push(Row {
                measure: "detection → manager p99".into(),
                giva: format!("{:.1} ms", p.p99),
                peer: self.heartbeat.map_or(String::new(), |h| {
                    format!(
                        "heartbeat only ({} s): {:.0} ms",
                        self.heartbeat_secs, h.p99
                    )
                }),
                ratio: String::new(),
                target: "< 100 ms".into(),
                met: Some(p.p99 < 100.0),
            });
        }
        s
    }

    /// The markdown report body (after the common header).
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        md.push_str("Real processes on loopback: `giva-manager serve` (SQLite on disk), `giva serve` (bundled database, outbox on disk, admin endpoint), `giva-shim load` (one process per run). Latencies are measured by the load generator from event sent to verdict received. The first storm runs with identity and TLS on: each clone enrolls with a clone token, the appliance signs its certificate (no manager round trip), and the clone connects with it on a connection of its own; the appliance reports to the manager over mTLS. Its registration latency counts the enrollment and the handshake. The second storm is the same in plaintext, with the VMs sharing 8 connections, as before identity.\n\nEach storm runs twice. First **open loop at a stated rate**: all clones at once, each offered an equal share of the rate, and a verdict timed from when its event went out (or from when it was due, if it went out more than 2 ms late, so falling behind counts). The default, 10,000 opens a second, is 500 clones each opening 20 files a second, all at once: several times what a broker that creates clones a few dozen at a time produces. That run carries the < 10 ms target. Then **closed loop**: as fast as the appliance answers, 64 clones at a time with 4 events in flight each, which measures capacity; its latencies are queueing on two cores shared with the load generator, not a target.\n\n");
        md.push_str("## Load runs\n\n| run | events | events/s | verdict p50 ms | p90 ms | p99 ms | max ms | cache hits | content requests | content bytes / image | register p99 ms | errors | wall s |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for r in &self.runs {
            md.push_str(&format!(
                "| {} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {:.2} | {:.2} | {} | {:.1} |\n",
                r.label,
                r.f("events"),
                r.f("events_per_sec"),
                r.lat("verdict_latency", "p50_ms"),
                r.lat("verdict_latency", "p90_ms"),
                r.lat("verdict_latency", "p99_ms"),
                r.lat("verdict_latency", "max_ms"),
                r.f("cache_hits"),
                r.f("content_requests"),
                r.f("content_per_image"),
                r.lat("register_latency", "p99_ms"),
                r.f("errors") + r.f("register_errors") + r.f("verdict_errors"),
                r.wall_s
            ));
        }
        md.push_str("\n## Instant-clone storm: bytes scanned\n\n");
        match self.storm_bytes {
            Some((image, scanned)) => md.push_str(&format!(
                "One image: {image} bytes. The appliance scanned {scanned:.0} bytes (`giva_scanned_bytes_total`) = **{:.2}× one image** (target ≤ 1.1×).\n",
                scanned / image as f64
            )),
            None => md.push_str("Not measured (see notes).\n"),
        }
        md.push_str("\n## Detection → manager\n\n`delay_ms` of `giva-manager events --json` (manager commit − appliance detection, same clock).\n\n| mode | detections | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|\n");
        for (mode, p) in [
            ("immediate (during the storm)".to_string(), self.immediate),
            (
                format!("heartbeat only ({} s)", self.heartbeat_secs),
                self.heartbeat,
            ),
        ] {
            match p {
                Some(p) => md.push_str(&format!(
                    "| {mode} | {} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                    p.n, p.p50, p.p90, p.p99, p.max
                )),
                None => md.push_str(&format!("| {mode} | 0 | – | – | – | – |\n")),
            }
        }
        md.push_str("\nTargets: detection → manager p99 < 100 ms; cache-hit verdict p99 < 1 ms; storm ≤ 1.1× one image.\n");
        let mut notes = self.notes.clone();
        let hit_runs: Vec<&LoadRun> = self
            .runs
            .iter()
            .filter(|r| r.label.starts_with("hit "))
            .collect();
        if !hit_runs.is_empty() && hit_runs.iter().all(|r| r.f("cache_hits") == 0.0) {
            notes.push(
                "No verdict came from the cache in any \"hit\" run (the same image id and files, opened again): the appliance scanned every open. \
                 The \"hit\" rows therefore measure repeated misses, not cache hits, until the verdict cache is in place."
                    .into(),
            );
        }
        if self.heartbeat.is_some() {
            notes.push(
                "Heartbeat-only latency depends on where the detections fall in the interval: this run's detections come right after the appliance's \
                 first heartbeat, so they wait almost a whole interval. With the product default of 600 s, expect up to 600 s."
                    .into(),
            );
        }
        if !notes.is_empty() {
            md.push_str("\n## Notes\n\n");
            for n in &notes {
                md.push_str(&format!("- {n}\n"));
            }
        }
        md
    }
}
