//! Requests from the event sources to the link, and the [`Ticket`] that
//! answers a held guest access exactly once: from the verdict, or by the
//! fail-open/fail-closed policy when the verdict is late, the appliance is
//! gone, or the request is dropped.

use std::fmt;
use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use giva_proto::shim::{EventKind, FileIdentity, Verdict};
use tokio::sync::oneshot;

use crate::watch::state::Shared;

/// Something that holds guest accesses and can answer them.
pub trait Gate: Send + Sync + fmt::Debug {
    /// Answers access `id`. Returns false when it was already answered (for
    /// example by its deadline).
    fn answer(&self, id: u64, allow: bool) -> bool;
    /// True while access `id` waits for an answer.
    fn is_pending(&self, id: u64) -> bool;
}

/// The right and the duty to answer one held guest access.
#[derive(Debug)]
pub struct Ticket {
    gate: Arc<dyn Gate>,
    id: u64,
    shared: Arc<Shared>,
    done: bool,
}

impl Ticket {
    /// A ticket for access `id` held by `gate`.
    pub fn new(gate: Arc<dyn Gate>, id: u64, shared: Arc<Shared>) -> Self {
        Ticket {
            gate,
            id,
            shared,
            done: false,
        }
    }

    /// True while the access still waits.
    pub fn is_pending(&self) -> bool {
        self.gate.is_pending(self.id)
    }

    /// Answers from a verdict.
    pub fn decide(mut self, allow: bool) {
        self.done = true;
        if self.gate.answer(self.id, allow) {
            let c = if allow {
                &self.shared.stats.allowed
            } else {
                &self.shared.stats.denied
            };
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Answers by the fail-open/fail-closed policy (counted and reported).
    pub fn fail(mut self) {
        self.done = true;
        self.fail_inner();
    }

    fn fail_inner(&self) {
        if self.shared.is_stopping() {
            // The watcher is stopping: let the guest go, uncounted.
            self.gate.answer(self.id, true);
            return;
        }
        let allow = self.shared.policy().fail_open();
        if self.gate.answer(self.id, allow) {
            self.shared.count_fail(allow);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            self.fail_inner();
        }
    }
}

/// Who waits for the outcome of a request.
#[derive(Debug)]
pub enum Reply {
    /// A guest access is held until the ticket is answered.
    Permission(Ticket),
    /// A task waits for the verdict (`None`: no verdict could be had).
    Notify(oneshot::Sender<Option<Verdict>>),
    /// Nobody waits.
    None,
}

/// One file event for the appliance.
#[derive(Debug)]
pub struct Request {
    /// What happened.
    pub kind: EventKind,
    /// The path in the guest.
    pub path: String,
    /// The file's identity (size, mtime, inode, device, image).
    pub identity: FileIdentity,
    /// Where content is read from when the appliance asks for it. Under
    /// fanotify this is the event's own descriptor, whose reads raise no
    /// further events.
    pub content: Arc<File>,
    /// Who waits.
    pub reply: Reply,
    /// The full scan this file belongs to (0: an on-access event).
    pub full_scan_id: u64,
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;
    use crate::policy::Overrides;
    /// A gate that records answers.
    #[derive(Debug, Default)]
    struct Recorder {
        pending: Mutex<HashMap<u64, Option<bool>>>,
    }

    impl Recorder {
        fn hold(&self, id: u64) {
            self.pending.lock().unwrap().insert(id, None);
        }
        fn answer_of(&self, id: u64) -> Option<bool> {
            self.pending.lock().unwrap().get(&id).copied().flatten()
        }
    }

    impl Gate for Recorder {
        fn answer(&self, id: u64, allow: bool) -> bool {
            match self.pending.lock().unwrap().get_mut(&id) {
                Some(slot @ None) => {
                    *slot = Some(allow);
                    true
                }
                _ => false,
            }
        }
        fn is_pending(&self, id: u64) -> bool {
            matches!(self.pending.lock().unwrap().get(&id), Some(None))
        }
    }

    #[test]
    fn a_ticket_is_answered_once_and_a_dropped_ticket_fails_by_policy() {
        let shared = Shared::new(Overrides {
            fail_open: Some(false),
            decision_timeout: None,
        });
        let rec = Arc::new(Recorder::default());
        let gate: Arc<dyn Gate> = rec.clone();
        for id in 1..=3 {
            rec.hold(id);
        }
        Ticket::new(gate.clone(), 1, shared.clone()).decide(true);
        drop(Ticket::new(gate.clone(), 2, shared.clone()));
        // Answered already (say, by its deadline): nothing more is counted.
        assert!(rec.answer(3, true));
        Ticket::new(gate.clone(), 3, shared.clone()).fail();
        assert_eq!(rec.answer_of(1), Some(true));
        assert_eq!(rec.answer_of(2), Some(false), "fail-closed");
        let s = shared.stats.snapshot();
        assert_eq!((s.allowed, s.fail_closed, s.fail_open), (1, 1, 0));
        let r = shared.pending_report().expect("a report is due");
        assert_eq!(r.fail_closed_decisions, 1);
        shared.mark_reported(&r);
        assert!(shared.pending_report().is_none());
    }
}
