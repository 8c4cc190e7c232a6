//! A shutdown token shared by the async tasks and the blocking threads of a
//! watcher.

use std::sync::Arc;

use tokio::sync::watch;

/// A cloneable stop signal: [`Shutdown::trigger`] once, and every clone sees
/// it, from async code ([`Shutdown::cancelled`]) or from a thread
/// ([`Shutdown::is_triggered`]).
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Shutdown {
    /// A token that has not fired.
    pub fn new() -> Self {
        Shutdown {
            tx: Arc::new(watch::channel(false).0),
        }
    }

    /// Fires the token.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// True once the token has fired.
    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Completes when the token fires.
    pub async fn cancelled(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives in `self`, so this only ends when the value is true.
        let _ = rx.wait_for(|v| *v).await;
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}
