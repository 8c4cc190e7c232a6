//! Where the manager keeps events and the VM inventory.
//!
//! This is the in-memory store. Events are deduplicated by `event_id`, so an
//! appliance that replays an event after a lost acknowledgement does not
//! count it twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use giva_proto::manager::{Event, EventKind, StoredEvent, VmInfo, VmState};

/// VM states as shown to operators.
pub mod state {
    /// No open detection.
    pub const CLEAN: &str = "clean";
    /// A detection was recorded and the VM is (to be) quarantined.
    pub const INFECTED: &str = "infected";
    /// A full scan was requested to confirm the VM is clean.
    pub const SCAN_REQUESTED: &str = "scan_requested";
}

#[derive(Debug, Default)]
struct Inner {
    events: Vec<StoredEvent>,
    by_id: HashMap<String, usize>,
    vms: BTreeMap<String, VmState>,
}

/// The in-memory event and inventory store. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

/// What happened when an event was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The event is new and was committed.
    New,
    /// The event was already stored; nothing changed.
    Duplicate,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated
        // in a way that matters more than losing the manager, so recover.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `event` unless an event with the same id exists. Returns
    /// whether it was new.
    pub fn insert_event(&self, event: Event, received_at_us: i64) -> Stored {
        let mut inner = self.lock();
        if inner.by_id.contains_key(&event.event_id) {
            return Stored::Duplicate;
        }
        if !event.vm_id.is_empty() {
            let vm = inner
                .vms
                .entry(event.vm_id.clone())
                .or_insert_with(|| VmState {
                    vm: Some(VmInfo {
                        vm_id: event.vm_id.clone(),
                        name: event.vm_name.clone(),
                        ..VmInfo::default()
                    }),
                    appliance_id: event.appliance_id.clone(),
                    state: state::CLEAN.to_string(),
                    ..VmState::default()
                });
            vm.last_seen_us = vm.last_seen_us.max(event.detected_at_us);
            if event.kind == EventKind::Detection as i32 {
                vm.detections += 1;
                vm.state = state::INFECTED.to_string();
            }
        }
        let idx = inner.events.len();
        inner.by_id.insert(event.event_id.clone(), idx);
        inner.events.push(StoredEvent {
            event: Some(event),
            received_at_us,
        });
        Stored::New
    }

    /// Records the VMs an appliance reported in a heartbeat.
    pub fn upsert_vms(&self, appliance_id: &str, vms: &[VmInfo], now_us: i64) {
        let mut inner = self.lock();
        for info in vms {
            let vm = inner
                .vms
                .entry(info.vm_id.clone())
                .or_insert_with(|| VmState {
                    state: state::CLEAN.to_string(),
                    ..VmState::default()
                });
            vm.vm = Some(info.clone());
            vm.appliance_id = appliance_id.to_string();
            vm.last_seen_us = now_us;
        }
    }

    /// Events received at or after `since_us`, optionally of one VM, oldest
    /// first, at most `limit` (the newest ones).
    pub fn events(&self, vm_id: Option<&str>, since_us: i64, limit: usize) -> Vec<StoredEvent> {
        let inner = self.lock();
        let matching: Vec<&StoredEvent> = inner
            .events
            .iter()
            .filter(|e| e.received_at_us >= since_us)
            .filter(|e| match (vm_id, &e.event) {
                (Some(id), Some(ev)) => ev.vm_id == id,
                (Some(_), None) => false,
                (None, _) => true,
            })
            .collect();
        let skip = matching.len().saturating_sub(limit);
        matching.into_iter().skip(skip).cloned().collect()
    }

    /// Every known VM.
    pub fn vms(&self) -> Vec<VmState> {
        self.lock().vms.values().cloned().collect()
    }

    /// Applies `f` to the VM's state, if the VM is known.
    pub fn update_vm<R>(&self, vm_id: &str, f: impl FnOnce(&mut VmState) -> R) -> Option<R> {
        self.lock().vms.get_mut(vm_id).map(f)
    }
}
