//! On-access blocking with fanotify permission events (Linux, root).
//!
//! One fanotify group of class `FAN_CLASS_CONTENT` receives
//! `FAN_OPEN_PERM`, `FAN_OPEN_EXEC_PERM` and `FAN_CLOSE_WRITE`. A dedicated
//! thread reads the group, so the kernel is answered even when the async
//! runtime is busy, and owns every deadline:
//!
//! - the shim's own process is allowed at once (its content reads go through
//!   the event's descriptor, which the kernel opens with `FMODE_NONOTIFY`, so
//!   they raise no events anyway; the check is for anything else it opens);
//! - non-regular files, excluded paths, kinds the policy does not scan and
//!   files over the size limit are allowed at once;
//! - while no session is open, permission events are decided by policy at
//!   once;
//! - everything else goes to the link with a [`Ticket`]; the thread answers
//!   it by policy when its deadline passes first.
//!
//! ## Marks
//!
//! A path that is a mount point (or `--mark mount`) gets a mount mark
//! (`FAN_MARK_MOUNT`): every file of that mount, recursively, including
//! directories created later. `--mark filesystem` uses `FAN_MARK_FILESYSTEM`
//! (every mount of that file system). Any other directory gets inode marks
//! with `FAN_EVENT_ON_CHILD` on itself and on each subdirectory that exists
//! at start (inode marks only cover direct children, and fanotify cannot
//! report new directories in this class), so a whole-mount mark is the
//! choice for real protection and inode marks suit a test directory. A file
//! gets an inode mark on itself.
//!
//! On stop, all marks are flushed, held accesses are allowed, and the group
//! is closed (the kernel also allows anything still queued when the group
//! closes, so a crashed shim never leaves the guest hanging).

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use giva_proto::shim::EventKind;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::fanotify::{
    EventFFlags, Fanotify, FanotifyEvent, FanotifyResponse, InitFlags, MarkFlags, MaskFlags,
    Response,
};
use tokio::sync::mpsc;

use crate::shutdown::Shutdown;
use crate::watch::config::MarkScope;
use crate::watch::content::identity_of;
use crate::watch::state::Shared;
use crate::watch::ticket::{Gate, Reply, Request, Ticket};

/// Most directories marked one by one under one path.
const MAX_DIR_MARKS: usize = 100_000;

fn perm_mask() -> MaskFlags {
    MaskFlags::FAN_OPEN_PERM | MaskFlags::FAN_OPEN_EXEC_PERM | MaskFlags::FAN_CLOSE_WRITE
}

/// The fanotify group and the accesses it holds.
#[derive(Debug)]
pub struct FanGate {
    fan: Fanotify,
    pending: Mutex<HashMap<u64, Held>>,
    marks: Mutex<Vec<(MarkFlags, PathBuf)>>,
}

#[derive(Debug)]
struct Held {
    event: FanotifyEvent,
    deadline: Instant,
}

/// Why fanotify cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// fanotify cannot be used on this machine (permission, kernel).
    Unsupported(String),
    /// A path could not be marked.
    BadPath(PathBuf, String),
}

impl FanGate {
    /// Creates the group and marks `paths`.
    ///
    /// # Errors
    ///
    /// [`Unavailable::Unsupported`] when fanotify is not permitted or not
    /// supported, [`Unavailable::BadPath`] when a path cannot be marked.
    pub fn open(paths: &[PathBuf], scope: MarkScope) -> Result<Arc<FanGate>, Unavailable> {
        let fan = Fanotify::init(
            InitFlags::FAN_CLASS_CONTENT | InitFlags::FAN_CLOEXEC | InitFlags::FAN_NONBLOCK,
            EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC,
        )
        .map_err(|e| Unavailable::Unsupported(init_reason(e)))?;
        let gate = FanGate {
            fan,
            pending: Mutex::new(HashMap::new()),
            marks: Mutex::new(Vec::new()),
        };
        for p in paths {
            gate.mark_path(p, scope)?;
        }
        Ok(Arc::new(gate))
    }

    fn mark_path(&self, path: &Path, scope: MarkScope) -> Result<(), Unavailable> {
        let bad = |e: String| Unavailable::BadPath(path.to_path_buf(), e);
        let md = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
        let scope = match scope {
            MarkScope::Auto if md.is_dir() && is_mount_point(path) => MarkScope::Mount,
            MarkScope::Auto => MarkScope::Inode,
            s => s,
        };
        match scope {
            MarkScope::Mount => self.mark_one(MarkFlags::FAN_MARK_MOUNT, perm_mask(), path),
            MarkScope::Filesystem => {
                self.mark_one(MarkFlags::FAN_MARK_FILESYSTEM, perm_mask(), path)
            }
            _ if !md.is_dir() => self.mark_one(MarkFlags::empty(), perm_mask(), path),
            _ => {
                let mask = perm_mask() | MaskFlags::FAN_EVENT_ON_CHILD;
                let mut n = 0usize;
                let dirs = walkdir::WalkDir::new(path)
                    .follow_links(false)
                    .same_file_system(true)
                    .into_iter()
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_dir());
                for d in dirs {
                    n += 1;
                    if n > MAX_DIR_MARKS {
                        tracing::warn!(path = %path.display(), "more than {MAX_DIR_MARKS} directories; mark the mount instead (--mark mount)");
                        break;
                    }
                    match self.mark_one(MarkFlags::empty(), mask, d.path()) {
                        Ok(()) => {}
                        // The top directory must be marked; a subdirectory
                        // that vanished meanwhile need not.
                        Err(e) if d.depth() == 0 => return Err(e),
                        Err(e) => tracing::debug!(?e, "subdirectory not marked"),
                    }
                }
                Ok(())
            }
        }
    }

    fn mark_one(&self, kind: MarkFlags, mask: MaskFlags, path: &Path) -> Result<(), Unavailable> {
        let cwd = std::fs::File::open(".").or_else(|_| std::fs::File::open("/"));
        let cwd = cwd.map_err(|e| Unavailable::BadPath(path.to_path_buf(), e.to_string()))?;
        self.fan
            .mark(MarkFlags::FAN_MARK_ADD | kind, mask, cwd.as_fd(), Some(path))
            .map_err(|e| match e {
                // The kernel lacks permission events or this kind of mark.
                Errno::EINVAL | Errno::ENOSYS | Errno::EPERM | Errno::EOPNOTSUPP => {
                    Unavailable::Unsupported(format!(
                        "fanotify_mark({}) failed: {e} (kernel without permission events, or not permitted)",
                        path.display()
                    ))
                }
                e => Unavailable::BadPath(path.to_path_buf(), e.to_string()),
            })?;
        if let Ok(mut m) = self.marks.lock() {
            m.push((kind, path.to_path_buf()));
        }
        Ok(())
    }

    fn respond(&self, event: &FanotifyEvent, allow: bool) {
        let Some(fd) = event.fd() else { return };
        let r = if allow {
            Response::FAN_ALLOW
        } else {
            Response::FAN_DENY
        };
        if let Err(e) = self.fan.write_response(FanotifyResponse::new(fd, r)) {
            tracing::warn!(error = %e, "cannot answer the kernel");
        }
    }

    fn hold(&self, id: u64, event: FanotifyEvent, deadline: Instant) {
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id, Held { event, deadline });
        } else {
            self.respond(&event, true);
        }
    }

    /// Answers every held access whose deadline passed, by policy. Returns
    /// the time until the next deadline.
    fn expire(&self, shared: &Shared, now: Instant) -> Option<Duration> {
        let mut expired = Vec::new();
        let mut next: Option<Instant> = None;
        if let Ok(mut p) = self.pending.lock() {
            let ids: Vec<u64> = p
                .iter()
                .filter(|(_, h)| h.deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            for id in ids {
                if let Some(h) = p.remove(&id) {
                    expired.push(h);
                }
            }
            next = p.values().map(|h| h.deadline).min();
        }
        for h in expired {
            let allow = shared.fail_now();
            tracing::debug!(allow, "verdict late; decided by policy");
            self.respond(&h.event, allow);
        }
        next.map(|d| d.saturating_duration_since(now))
    }

    /// Removes every mark and allows everything held.
    fn close(&self) {
        let marks = self
            .marks
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default();
        if let Ok(cwd) = std::fs::File::open("/") {
            for (kind, path) in marks {
                let _ = self.fan.mark(
                    MarkFlags::FAN_MARK_REMOVE | kind,
                    perm_mask() | MaskFlags::FAN_EVENT_ON_CHILD,
                    cwd.as_fd(),
                    Some(&path),
                );
            }
        }
        for flags in [
            MarkFlags::empty(),
            MarkFlags::FAN_MARK_MOUNT,
            MarkFlags::FAN_MARK_FILESYSTEM,
        ] {
            let _ = self.fan.mark::<_, Path>(
                MarkFlags::FAN_MARK_FLUSH | flags,
                MaskFlags::empty(),
                self.fan.as_fd(),
                None,
            );
        }
        let held: Vec<Held> = self
            .pending
            .lock()
            .map(|mut p| p.drain().map(|(_, h)| h).collect())
            .unwrap_or_default();
        for h in held {
            self.respond(&h.event, true);
        }
    }
}

impl Gate for FanGate {
    fn answer(&self, id: u64, allow: bool) -> bool {
        let held = self.pending.lock().ok().and_then(|mut p| p.remove(&id));
        match held {
            Some(h) => {
                self.respond(&h.event, allow);
                true
            }
            None => false,
        }
    }

    fn is_pending(&self, id: u64) -> bool {
        self.pending
            .lock()
            .map(|p| p.contains_key(&id))
            .unwrap_or(false)
    }
}

fn init_reason(e: Errno) -> String {
    match e {
        Errno::EPERM => format!(
            "fanotify_init: operation not permitted (needs CAP_SYS_ADMIN; running as uid {})",
            effective_uid()
        ),
        Errno::ENOSYS => "fanotify_init: the kernel has no fanotify support".to_string(),
        Errno::EINVAL => {
            "fanotify_init: the kernel refuses FAN_CLASS_CONTENT (no permission events)".to_string()
        }
        e => format!("fanotify_init: {e}"),
    }
}

/// The effective uid, from `/proc/self` (no `unsafe`, no extra features).
fn effective_uid() -> String {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// True when `path` is the root of a mount.
fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(canon) = path.canonicalize() else {
        return false;
    };
    let Some(parent) = canon.parent() else {
        return true; // "/"
    };
    match (std::fs::metadata(&canon), std::fs::metadata(parent)) {
        (Ok(a), Ok(b)) => a.dev() != b.dev() || a.ino() == b.ino(),
        _ => false,
    }
}

/// Settings of the reader thread.
#[derive(Debug, Clone)]
pub struct ReaderConfig {
    /// Image id put in every file identity.
    pub image_id: String,
    /// Allow the shim's own process at once (turn off only for tests that
    /// run the watcher in the same process as the guest activity).
    pub skip_own_pid: bool,
}

/// The fanotify read loop; runs on its own thread until `shutdown` fires,
/// then removes the marks and allows everything held.
pub fn reader_loop(
    gate: Arc<FanGate>,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Request>,
    shutdown: Shutdown,
    config: ReaderConfig,
) {
    let me = i32::try_from(std::process::id()).unwrap_or(-1);
    let mut next_id = 0u64;
    let mut wait = Duration::from_millis(200);
    while !shutdown.is_triggered() {
        let timeout =
            PollTimeout::from(u16::try_from(wait.as_millis().clamp(1, 200)).unwrap_or(200));
        let mut fds = [PollFd::new(gate.fan.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, timeout) {
            Ok(0) | Err(Errno::EINTR) => {}
            Ok(_) => match gate.fan.read_events() {
                Ok(events) => {
                    for ev in events {
                        on_event(&gate, &shared, &tx, &config, me, &mut next_id, ev);
                    }
                }
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(e) => {
                    tracing::error!(error = %e, "reading fanotify events failed");
                    std::thread::sleep(Duration::from_millis(10));
                }
            },
            Err(e) => {
                tracing::error!(error = %e, "poll on fanotify failed");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        wait = gate
            .expire(&shared, Instant::now())
            .unwrap_or(Duration::from_millis(200));
    }
    gate.close();
}

fn on_event(
    gate: &Arc<FanGate>,
    shared: &Arc<Shared>,
    tx: &mpsc::Sender<Request>,
    config: &ReaderConfig,
    me: i32,
    next_id: &mut u64,
    ev: FanotifyEvent,
) {
    let stats = &shared.stats;
    if !ev.check_version() {
        tracing::error!(version = ev.version(), "fanotify metadata version mismatch");
        gate.respond(&ev, true);
        return;
    }
    let mask = ev.mask();
    if mask.contains(MaskFlags::FAN_Q_OVERFLOW) {
        tracing::warn!("the kernel's fanotify queue overflowed; events were lost");
        shared.count_dropped();
        return;
    }
    let Some(fd) = ev.fd() else { return };
    stats.events.fetch_add(1, Ordering::Relaxed);
    let perm = mask.intersects(MaskFlags::FAN_OPEN_PERM | MaskFlags::FAN_OPEN_EXEC_PERM);
    let kind = if mask.contains(MaskFlags::FAN_OPEN_EXEC_PERM) {
        EventKind::Exec
    } else if mask.contains(MaskFlags::FAN_OPEN_PERM) {
        EventKind::Open
    } else {
        EventKind::CloseWrite
    };
    let allow_now = |gate: &FanGate, ev: &FanotifyEvent| {
        if perm {
            gate.respond(ev, true);
        }
    };
    if config.skip_own_pid && ev.pid() == me {
        stats.own.fetch_add(1, Ordering::Relaxed);
        return allow_now(gate, &ev);
    }
    // A second descriptor on the same open file: reads through it raise no
    // events, and it outlives the event, which closes its own on answer.
    let content = match fd.try_clone_to_owned() {
        Ok(owned) => File::from(owned),
        Err(e) => {
            tracing::warn!(error = %e, "cannot duplicate the event descriptor");
            if perm {
                let allow = shared.fail_now();
                gate.respond(&ev, allow);
            }
            return;
        }
    };
    let (identity, regular) = identity_of(&content, &config.image_id).unwrap_or_default();
    if !regular {
        stats.skipped.fetch_add(1, Ordering::Relaxed);
        return allow_now(gate, &ev);
    }
    let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path = path
        .strip_suffix(" (deleted)")
        .map(str::to_string)
        .unwrap_or(path);
    let policy = shared.policy();
    if policy.check(kind, &path, identity.size).is_err() || path.is_empty() {
        stats.skipped.fetch_add(1, Ordering::Relaxed);
        return allow_now(gate, &ev);
    }
    let reply = if perm {
        if !shared.is_connected() {
            let allow = shared.fail_now();
            gate.respond(&ev, allow);
            return;
        }
        *next_id += 1;
        let id = *next_id;
        gate.hold(id, ev, Instant::now() + policy.decision_timeout());
        let gate: Arc<dyn Gate> = gate.clone();
        Reply::Permission(Ticket::new(gate, id, shared.clone()))
    } else {
        Reply::None
    };
    let req = Request {
        kind,
        path,
        identity,
        content: Arc::new(content),
        reply,
        full_scan_id: 0,
    };
    if let Err(e) = tx.try_send(req) {
        // Queue full or link gone: the ticket, dropped with the request,
        // decides by policy.
        shared.count_dropped();
        drop(e);
    }
}
