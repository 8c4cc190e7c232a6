//! The tagging queue: one row per configured action per transition,
//! pending until applied or failed for good; and the transitions
//! themselves.

use sqlx::Row;

use crate::quarantine::TagOp;
use crate::store::db::Store;
use crate::store::records::{ActionOutcome, ActionRow, ActionStatus, StoreError, Transition};
use crate::store::vms::{load_vm, save_vm};
use crate::time::format_us;

pub(crate) const ACTION_COLUMNS: &str = "id, transition_id, vm_id, action, op, status, attempts, detail, payload, created_at_us, updated_at_us";

pub(crate) fn action_row(r: &sqlx::sqlite::SqliteRow) -> Result<ActionRow, StoreError> {
    let op: &str = r.get(4);
    Ok(ActionRow {
        id: r.get(0),
        transition_id: r.get(1),
        vm_id: r.get(2),
        action: r.get(3),
        op: TagOp::parse(op).ok_or_else(|| StoreError::corrupt("action op", op))?,
        status: r.get::<&str, _>(5).parse()?,
        attempts: u32::try_from(r.get::<i64, _>(6)).unwrap_or(0),
        detail: r.get(7),
        payload: r.get(8),
        created_at_us: r.get(9),
        updated_at_us: r.get(10),
    })
}

/// Updates one action row, then its VM's `last_action` (and `tagged`
/// once every action of the transition is applied).
async fn update_action(
    conn: &mut sqlx::SqliteConnection,
    id: i64,
    status: ActionStatus,
    attempts: u32,
    detail: &str,
    now_us: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE actions SET status = ?, attempts = ?, detail = ?, updated_at_us = ? WHERE id = ?",
    )
    .bind(status.as_str())
    .bind(i64::from(attempts))
    .bind(detail)
    .bind(now_us)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    let Some(row) = sqlx::query("SELECT transition_id, vm_id FROM actions WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(());
    };
    let (transition_id, vm_id): (i64, String) = (row.get(0), row.get(1));
    // Only the newest transition with actions speaks for the VM.
    let newest: i64 =
        sqlx::query("SELECT COALESCE(MAX(transition_id), 0) FROM actions WHERE vm_id = ?")
            .bind(&vm_id)
            .fetch_one(&mut *conn)
            .await?
            .get(0);
    if newest == transition_id
        && let Some(mut vm) = load_vm(conn, &vm_id).await?
    {
        let rows = sqlx::query(&format!(
            "SELECT {ACTION_COLUMNS} FROM actions WHERE transition_id = ? ORDER BY id"
        ))
        .bind(transition_id)
        .fetch_all(&mut *conn)
        .await?;
        let rows = rows.iter().map(action_row).collect::<Result<Vec<_>, _>>()?;
        let all_applied = rows.iter().all(|r| r.status == ActionStatus::Applied);
        if let Some(first) = rows.first()
            && all_applied
        {
            vm.tagged = first.op == TagOp::Tag;
        }
        vm.last_action = summarize(&rows, now_us);
        save_vm(conn, &vm).await?;
    }
    Ok(())
}

/// `last_action` for the rows of one transition, e.g.
/// `tag at 2026-…: nsx applied (1 attempt); webhook failed after 5 attempts: HTTP 500`.
pub(crate) fn summarize(rows: &[ActionRow], now_us: i64) -> String {
    let op = rows.first().map_or("tag", |r| r.op.as_str());
    let parts: Vec<String> = rows
        .iter()
        .map(|r| match r.status {
            ActionStatus::Applied => format!(
                "{} applied ({} attempt{})",
                r.action,
                r.attempts,
                if r.attempts == 1 { "" } else { "s" }
            ),
            ActionStatus::Failed => format!(
                "{} failed after {} attempt{}: {}",
                r.action,
                r.attempts,
                if r.attempts == 1 { "" } else { "s" },
                r.detail
            ),
            ActionStatus::Superseded | ActionStatus::Cancelled => {
                format!("{} {}: {}", r.action, r.status, r.detail)
            }
            _ if r.attempts > 0 => format!(
                "{} retrying after {} failed attempt{}: {}",
                r.action,
                r.attempts,
                if r.attempts == 1 { "" } else { "s" },
                r.detail
            ),
            _ => format!("{} pending", r.action),
        })
        .collect();
    format!("{op} at {}: {}", format_us(now_us), parts.join("; "))
}

impl Store {
    /// Every pending action, oldest first.
    pub async fn pending_actions(&self) -> Result<Vec<ActionRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ACTION_COLUMNS} FROM actions WHERE status = ? ORDER BY id"
        ))
        .bind(ActionStatus::Pending.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(action_row).collect()
    }

    /// Records actions' outcomes, by action id, and updates their VMs
    /// (`tagged`, `last_action`), in one transaction (the tagger batches
    /// them, so that an outbreak costs few commits).
    pub async fn finish_actions(
        &self,
        outcomes: &[(i64, ActionOutcome)],
        now_us: i64,
    ) -> Result<(), StoreError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        for (id, o) in outcomes {
            update_action(&mut tx, *id, o.status, o.attempts, &o.detail, now_us).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The oldest pending action, if any (for health).
    pub async fn oldest_pending_action(&self) -> Result<Option<ActionRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ACTION_COLUMNS} FROM actions WHERE status = ? ORDER BY id LIMIT 1"
        ))
        .bind(ActionStatus::Pending.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(action_row).transpose()
    }

    /// Cancels every pending action of `vm_id` (an operator's decision,
    /// recorded with `who`); returns their ids.
    pub async fn cancel_actions(
        &self,
        vm_id: &str,
        who: &str,
        now_us: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.write_tx().await?;
        let ids: Vec<i64> = sqlx::query("SELECT id FROM actions WHERE vm_id = ? AND status = ?")
            .bind(vm_id)
            .bind(ActionStatus::Pending.as_str())
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for &id in &ids {
            let attempts: i64 = sqlx::query("SELECT attempts FROM actions WHERE id = ?")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?
                .get(0);
            update_action(
                &mut tx,
                id,
                ActionStatus::Cancelled,
                u32::try_from(attempts).unwrap_or(0),
                &format!("cancelled by {who}"),
                now_us,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Records a failed attempt of a still pending action (attempts so far
    /// and the error), so that `last_action` shows the retrying.
    pub async fn note_attempt(
        &self,
        id: i64,
        attempts: u32,
        error: &str,
        now_us: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        update_action(&mut tx, id, ActionStatus::Pending, attempts, error, now_us).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Actions, newest last (at most `limit`, the newest), of one VM or all.
    pub async fn actions(
        &self,
        vm_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ActionRow>, StoreError> {
        let rows = self.newest("actions", ACTION_COLUMNS, vm_id, limit).await?;
        rows.iter().map(action_row).collect()
    }

    /// Transitions, newest last (at most `limit`, the newest), of one VM or all.
    pub async fn transitions(
        &self,
        vm_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Transition>, StoreError> {
        const COLS: &str = "id, vm_id, from_state, to_state, cause, event_id, at_us";
        let rows = self.newest("vm_transitions", COLS, vm_id, limit).await?;
        rows.iter()
            .map(|r| {
                Ok(Transition {
                    id: r.get(0),
                    vm_id: r.get(1),
                    from: r.get::<&str, _>(2).parse()?,
                    to: r.get::<&str, _>(3).parse()?,
                    cause: r.get(4),
                    event_id: r.get(5),
                    at_us: r.get(6),
                })
            })
            .collect()
    }
}
