//! The VMs this appliance serves and their sessions.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use giva_proto::manager::VmInfo;
use giva_proto::shim::{ApplianceMessage, FullScanCommand, VmIdentity, appliance_message};
use tokio::sync::mpsc;
use tonic::Status;

/// Sender of messages on a VM's session stream.
pub type SessionSender = mpsc::Sender<Result<ApplianceMessage, Status>>;

#[derive(Debug)]
struct VmEntry {
    identity: VmIdentity,
    session_id: String,
    registered_at_us: i64,
    /// Set while a session stream is open.
    stream: Option<SessionSender>,
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
}

/// Registered VMs, by VM id, and their session ids.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<HashMap<String, VmEntry>>,
    sessions: Mutex<HashMap<String, String>>,
    counter: AtomicU64,
}

impl Registry {
    /// Sends a full-scan command to a VM's open session, if it has one.
    /// False if the VM has no open session or its stream is full.
    pub fn send_full_scan_command(&self, vm_id: &str, reason: &str) -> bool {
        let Some(tx) = self.stream_of(vm_id) else {
            tracing::warn!(
                vm_id,
                "full scan requested for a VM without an open session"
            );
            return false;
        };
        let msg = ApplianceMessage {
            msg: Some(appliance_message::Msg::FullScanCommand(FullScanCommand {
                reason: reason.to_string(),
            })),
        };
        tx.try_send(Ok(msg)).is_ok()
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
    pub fn register(&self, identity: VmIdentity, now_us: i64) -> Result<String, AttachError> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let session_id = format!("{:x}-{n:x}", now_us);
        let mut vms = self.lock();
        if let Some(old) = vms.get(&identity.vm_id) {
            if old.stream.as_ref().is_some_and(|s| !s.is_closed()) {
                return Err(AttachError::AlreadyConnected(identity.vm_id.clone()));
            }
            self.sessions().remove(&old.session_id);
        }
        self.sessions()
            .insert(session_id.clone(), identity.vm_id.clone());
        vms.insert(
            identity.vm_id.clone(),
            VmEntry {
                identity,
                session_id: session_id.clone(),
                registered_at_us: now_us,
                stream: None,
            },
        );
        Ok(session_id)
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

    /// The VM list for the heartbeat.
    pub fn vm_infos(&self) -> Vec<VmInfo> {
        self.lock()
            .values()
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
