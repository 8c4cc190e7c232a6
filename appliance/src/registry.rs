//! The VMs this appliance serves and their sessions.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use giva_proto::manager::VmInfo;
use giva_proto::shim::{ApplianceMessage, FullScanCommand, VmIdentity, appliance_message};
use tokio::sync::mpsc;
use tonic::Status;

use crate::fullscan::ScanOrder;
use crate::inventory::Inventory;
use crate::policy::Policies;

/// Orders kept per VM, at most (the oldest goes first).
const MAX_ORDERS_PER_VM: usize = 8;
/// An order sent to a VM: its token, the order, and when it was sent.
type PendingOrder = (String, ScanOrder, std::time::Instant);

/// How long an order waits for its scan to start.
const ORDER_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Sender of messages on a VM's session stream.
pub type SessionSender = mpsc::Sender<Result<ApplianceMessage, Status>>;

#[derive(Debug)]
struct VmEntry {
    /// As registered, with group and image from the inventory.
    identity: VmIdentity,
    /// The image's template VM.
    template: bool,
    session_id: String,
    registered_at_us: i64,
    /// Set while a session stream is open.
    stream: Option<SessionSender>,
    /// A session was opened at least once: the VM is not forgotten.
    attached: bool,
}

/// Why a VM could not register, or a session could not be attached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    /// No VM registered with this session id.
    #[error("unknown session")]
    UnknownSession,
    /// The VM already has an open stream.
    #[error("VM {0} already has a live session")]
    AlreadyConnected(String),
    /// The registry holds as many VMs as it may.
    #[error("{0} VMs are registered, the most this appliance takes (server.max_registered_vms)")]
    Full(usize),
}

/// Registered VMs, by VM id, and their session ids.
#[derive(Debug)]
pub struct Registry {
    inner: Mutex<HashMap<String, VmEntry>>,
    sessions: Mutex<HashMap<String, String>>,
    counter: AtomicU64,
    /// Full scans ordered and not started yet, by VM, with their tokens.
    orders: Mutex<HashMap<String, Vec<PendingOrder>>>,
    /// Paths with detections, by VM, since its last scan that proved it
    /// clean: every ordered scan re-reads them first.
    detected: Mutex<HashMap<String, std::collections::BTreeSet<String>>>,
    policies: std::sync::Arc<Policies>,
    inventory: Inventory,
    /// The most VMs registered at once.
    max_vms: usize,
    /// How long a VM that never opened a session stays registered.
    ttl: std::time::Duration,
}

impl Registry {
    /// The same registry, holding at most `max_vms` VMs, and forgetting a
    /// VM that never opened a session after `ttl`.
    pub fn with_limits(self, max_vms: usize, ttl: std::time::Duration) -> Self {
        Registry {
            max_vms,
            ttl,
            ..self
        }
    }

    /// Forgets the VMs that registered before `now_us - ttl` and never
    /// opened a session.
    fn prune(&self, vms: &mut HashMap<String, VmEntry>, now_us: i64) {
        let ttl = i64::try_from(self.ttl.as_micros()).unwrap_or(i64::MAX);
        let before = now_us.saturating_sub(ttl);
        let mut sessions = self.sessions();
        vms.retain(|_, e| {
            let keep = e.attached || e.registered_at_us >= before;
            if !keep {
                sessions.remove(&e.session_id);
            }
            keep
        });
    }
    /// An empty registry; VMs are placed by `inventory`, and ordered scans
    /// walk the roots of `policies`.
    pub fn new(policies: std::sync::Arc<Policies>, inventory: Inventory) -> Self {
        Registry {
            inner: Mutex::default(),
            sessions: Mutex::default(),
            counter: AtomicU64::new(0),
            orders: Mutex::default(),
            detected: Mutex::default(),
            policies,
            inventory,
            max_vms: usize::MAX,
            ttl: std::time::Duration::MAX,
        }
    }

    /// Orders a full scan of a VM over its policy's roots: sends the
    /// command to its open session, and keeps the order until the shim
    /// starts the scan with the command's token. False if the VM has no
    /// open session or its stream is full.
    pub fn send_full_scan_command(&self, vm_id: &str, mut order: ScanOrder) -> bool {
        let Some(tx) = self.stream_of(vm_id) else {
            tracing::warn!(
                vm_id,
                "full scan requested for a VM without an open session"
            );
            return false;
        };
        let group = self
            .lock()
            .get(vm_id)
            .map(|e| e.identity.group.clone())
            .unwrap_or_default();
        order.roots = self.policies.for_group(&group).full_scan_roots().to_vec();
        if let Some(known) = self
            .detected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(vm_id)
        {
            order.recheck.extend(known.iter().cloned());
        }
        order.recheck.sort();
        order.recheck.dedup();
        order.recheck.truncate(crate::fullscan::MAX_RECHECK);
        let token = match giva_runtime::token::random_hex(16) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(vm_id, error = %e, "no random source: the full scan is not ordered");
                return false;
            }
        };
        let msg = ApplianceMessage {
            msg: Some(appliance_message::Msg::FullScanCommand(FullScanCommand {
                reason: order.reason.clone(),
                scan_token: token.clone(),
                roots: order.roots.clone(),
                recheck_paths: order.recheck.clone(),
            })),
        };
        {
            let mut orders = self.orders.lock().unwrap_or_else(|e| e.into_inner());
            let list = orders.entry(vm_id.to_string()).or_default();
            if list.len() >= MAX_ORDERS_PER_VM {
                list.remove(0);
            }
            list.push((token, order, std::time::Instant::now()));
        }
        tx.try_send(Ok(msg)).is_ok()
    }

    /// Remembers a detection at `path` in `vm_id`, for the next ordered
    /// scan to re-read. Orders not started yet are void: a scan that
    /// proves anything starts after the latest detection.
    pub fn note_detection(&self, vm_id: &str, path: &str) {
        self.orders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(vm_id);
        let mut d = self.detected.lock().unwrap_or_else(|e| e.into_inner());
        let paths = d.entry(vm_id.to_string()).or_default();
        if paths.len() < crate::fullscan::MAX_RECHECK {
            paths.insert(path.to_string());
        }
    }

    /// Forgets the detections of `vm_id` that a scan proved gone or clean.
    pub fn forget_detections(&self, vm_id: &str, proven: &[String]) {
        let mut d = self.detected.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(paths) = d.get_mut(vm_id) {
            for p in proven {
                paths.remove(p);
            }
            if paths.is_empty() {
                d.remove(vm_id);
            }
        }
    }

    /// Takes the order of `vm_id` with `token`, if there is one: a scan
    /// answers an order once.
    pub fn take_order(&self, vm_id: &str, token: &str) -> Option<ScanOrder> {
        if token.is_empty() {
            return None;
        }
        let mut orders = self.orders.lock().unwrap_or_else(|e| e.into_inner());
        let list = orders.get_mut(vm_id)?;
        list.retain(|(_, _, issued)| issued.elapsed() < ORDER_TTL);
        let i = list.iter().position(|(t, _, _)| t == token)?;
        let (_, order, _) = list.remove(i);
        if list.is_empty() {
            orders.remove(vm_id);
        }
        Some(order)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VmEntry>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers (or re-registers) a VM and returns its new session id.
    ///
    /// # Errors
    ///
    /// The VM has a live session stream: a second registration of a live VM
    /// id is refused, so two guests cannot claim one identity.
    pub fn register(
        &self,
        mut identity: VmIdentity,
        now_us: i64,
    ) -> Result<(String, VmIdentity), AttachError> {
        // Group and image are the operator's, never the guest's.
        let placed = self.inventory.place(&identity.vm_id);
        if (!identity.group.is_empty() && identity.group != placed.group)
            || (!identity.image_id.is_empty() && identity.image_id != placed.image)
        {
            tracing::debug!(
                vm_id = %identity.vm_id,
                claimed_group = %identity.group,
                claimed_image = %identity.image_id,
                group = %placed.group,
                image = %placed.image,
                "a VM's own group or image ignored for the inventory's"
            );
        }
        identity.group = placed.group;
        identity.image_id = placed.image;
        // Unguessable: a session id is what opens the VM's stream.
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let session_id = giva_runtime::token::random_hex(16)
            .unwrap_or_else(|_| format!("{:032x}-{now_us:x}-{n:x}", fastrand::u128(..)));
        let mut vms = self.lock();
        let mut attached = false;
        if let Some(old) = vms.get(&identity.vm_id) {
            if old.stream.as_ref().is_some_and(|s| !s.is_closed()) {
                return Err(AttachError::AlreadyConnected(identity.vm_id.clone()));
            }
            attached = old.attached;
            self.sessions().remove(&old.session_id);
        } else if vms.len() >= self.max_vms {
            self.prune(&mut vms, now_us);
            if vms.len() >= self.max_vms {
                return Err(AttachError::Full(self.max_vms));
            }
        }
        self.sessions()
            .insert(session_id.clone(), identity.vm_id.clone());
        vms.insert(
            identity.vm_id.clone(),
            VmEntry {
                identity: identity.clone(),
                template: placed.template,
                session_id: session_id.clone(),
                registered_at_us: now_us,
                stream: None,
                attached,
            },
        );
        Ok((session_id, identity))
    }

    /// The operator's inventory.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// True when `vm_id` is its image's template.
    pub fn is_template(&self, vm_id: &str) -> bool {
        self.lock().get(vm_id).is_some_and(|e| e.template)
    }

    /// The VM a session id was given to, if any.
    pub fn vm_of_session(&self, session_id: &str) -> Option<String> {
        self.sessions().get(session_id).cloned()
    }

    /// Attaches a session stream; returns the VM's identity.
    ///
    /// # Errors
    ///
    /// The session is unknown, or the VM already has an open stream.
    pub fn attach(&self, session_id: &str, tx: SessionSender) -> Result<VmIdentity, AttachError> {
        let vm_id = self
            .sessions()
            .get(session_id)
            .cloned()
            .ok_or(AttachError::UnknownSession)?;
        let mut vms = self.lock();
        let entry = vms.get_mut(&vm_id).ok_or(AttachError::UnknownSession)?;
        if entry.stream.as_ref().is_some_and(|s| !s.is_closed()) {
            return Err(AttachError::AlreadyConnected(vm_id));
        }
        entry.stream = Some(tx);
        entry.attached = true;
        Ok(entry.identity.clone())
    }

    /// Detaches the stream of a session (if it is still the current one).
    pub fn detach(&self, session_id: &str) {
        let Some(vm_id) = self.sessions().get(session_id).cloned() else {
            return;
        };
        if let Some(entry) = self.lock().get_mut(&vm_id)
            && entry.session_id == session_id
        {
            entry.stream = None;
        }
    }

    /// The open stream of a VM, if any.
    pub fn stream_of(&self, vm_id: &str) -> Option<SessionSender> {
        self.lock()
            .get(vm_id)
            .and_then(|e| e.stream.clone())
            .filter(|s| !s.is_closed())
    }

    /// Ids of the VMs with an open session.
    pub fn connected(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, e)| e.stream.as_ref().is_some_and(|s| !s.is_closed()))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The VM list for the heartbeat (VMs that registered long ago and
    /// never opened a session are forgotten first).
    pub fn vm_infos(&self) -> Vec<VmInfo> {
        let mut vms = self.lock();
        self.prune(&mut vms, giva_proto::now_us());
        vms.values()
            .map(|e| VmInfo {
                vm_id: e.identity.vm_id.clone(),
                name: e.identity.name.clone(),
                image_id: e.identity.image_id.clone(),
                os: e.identity.os.clone(),
                agent_version: e.identity.agent_version.clone(),
                connected: e.stream.as_ref().is_some_and(|s| !s.is_closed()),
                registered_at_us: e.registered_at_us,
            })
            .collect()
    }
}
