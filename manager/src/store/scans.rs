//! Scan orders, exceptions, and the evidence a full scan's record is
//! weighed against before it may release a VM.

use giva_proto::manager::{Event, EventKind, ScanSummary};
use prost::Message;
use sqlx::Row;

use crate::quarantine::ScanEvidence;
use crate::store::db::Store;
use crate::store::records::StoreError;

/// Detected paths of one VM listed in an order, at most.
pub const MAX_RECHECK: usize = 1000;

/// When `vm_id` was last released (manager clock; 0: never).
async fn released_at(conn: &mut sqlx::SqliteConnection, vm_id: &str) -> Result<i64, StoreError> {
    Ok(sqlx::query(
        "SELECT COALESCE(MAX(at_us), 0) FROM vm_transitions WHERE vm_id = ? AND to_state = 'clean'",
    )
    .bind(vm_id)
    .fetch_one(&mut *conn)
    .await?
    .get(0))
}

/// The distinct paths of `vm_id`'s detections since its last release, and
/// when the newest of them was received (manager clock).
async fn detections_since_release(
    conn: &mut sqlx::SqliteConnection,
    vm_id: &str,
) -> Result<(Vec<String>, i64), StoreError> {
    let since = released_at(conn, vm_id).await?;
    let rows = sqlx::query(
        "SELECT payload, received_at_us FROM events
         WHERE vm_id = ? AND kind = ? AND received_at_us >= ? ORDER BY rowid",
    )
    .bind(vm_id)
    .bind(EventKind::Detection as i32)
    .bind(since)
    .fetch_all(&mut *conn)
    .await?;
    let mut paths = std::collections::BTreeSet::new();
    let mut newest = 0;
    for r in &rows {
        newest = newest.max(r.get::<i64, _>(1));
        if let Ok(ev) = Event::decode(r.get::<&[u8], _>(0))
            && !ev.path.is_empty()
        {
            paths.insert(ev.path);
        }
    }
    Ok((paths.into_iter().collect(), newest))
}

/// What the store knows that bears on `record`, a full scan of `vm_id`
/// (see [`crate::quarantine::on_event`]).
pub(crate) async fn evidence(
    conn: &mut sqlx::SqliteConnection,
    vm: &giva_proto::manager::VmState,
    appliance_id: &str,
    record: &ScanSummary,
    appliances_authenticated: bool,
) -> Result<ScanEvidence, StoreError> {
    let vm_id = vm.vm.as_ref().map(|v| v.vm_id.as_str()).unwrap_or_default();
    let (detected, newest_detection_us) = detections_since_release(conn, vm_id).await?;
    let mut problems = Vec::new();
    if !vm.appliance_id.is_empty() && vm.appliance_id != appliance_id {
        problems.push(format!(
            "reported by appliance {appliance_id}, but the VM is {}'s",
            vm.appliance_id
        ));
    }
    if record.ordered_by == "schedule" && !appliances_authenticated {
        // No order of the manager's to check it against: only an
        // appliance the manager knows by its certificate may vouch for it.
        problems.push(
            "a scheduled scan releases a VM only when the manager authenticates appliances \
             (--client-ca); order one with `giva-manager scan`"
                .into(),
        );
    }
    if record.ordered_by == "manager" {
        let order = sqlx::query(
            "SELECT vm_id, appliance_id, created_at_us, used_by FROM scan_orders WHERE order_id = ?",
        )
        .bind(&record.order_id)
        .fetch_optional(&mut *conn)
        .await?;
        match order {
            None => problems.push(format!("no order {:?} was issued", record.order_id)),
            Some(o) => {
                let (o_vm, o_app, created, used): (String, String, i64, String) =
                    (o.get(0), o.get(1), o.get(2), o.get(3));
                if o_vm != vm_id || o_app != appliance_id {
                    problems.push(format!(
                        "order {} was for VM {o_vm} on appliance {o_app}",
                        record.order_id
                    ));
                }
                if !used.is_empty() {
                    problems.push(format!(
                        "order {} was used already (event {used})",
                        record.order_id
                    ));
                }
                if created <= newest_detection_us {
                    problems.push(format!(
                        "order {} was issued before the latest detection",
                        record.order_id
                    ));
                }
            }
        }
    }
    let unproven: Vec<String> = detected
        .into_iter()
        .filter(|p| !record.rechecked.contains(p))
        .collect();
    if !unproven.is_empty() {
        problems.push(format!(
            "{} detected path{} not found clean or gone by the scan: {}",
            unproven.len(),
            if unproven.len() == 1 { "" } else { "s" },
            unproven
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut unexcepted = Vec::new();
    for f in &record.skipped {
        let excepted = !f.sha256.is_empty()
            && sqlx::query(
                "SELECT 1 FROM scan_exceptions WHERE vm_id = ? AND path = ? AND sha256 = ?",
            )
            .bind(vm_id)
            .bind(&f.path)
            .bind(f.sha256.to_ascii_lowercase())
            .fetch_optional(&mut *conn)
            .await?
            .is_some();
        if !excepted {
            unexcepted.push(format!("{} ({})", f.path, f.reason));
        }
    }
    if !unexcepted.is_empty() {
        problems.push(format!(
            "{} file{} skipped by a limit without an exception: {}",
            unexcepted.len(),
            if unexcepted.len() == 1 { "" } else { "s" },
            unexcepted
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(ScanEvidence { problems })
}

/// Marks `order_id` used by `event_id`.
pub(crate) async fn use_order(
    conn: &mut sqlx::SqliteConnection,
    order_id: &str,
    event_id: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE scan_orders SET used_by = ? WHERE order_id = ? AND used_by = ''")
        .bind(event_id)
        .bind(order_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Store {
    /// Issues a scan order for `vm_id` on `appliance_id`: a fresh nonce,
    /// and the paths of the VM's detections since its last release (at
    /// most [`MAX_RECHECK`]) for the scan to re-read.
    pub async fn order_scan(
        &self,
        vm_id: &str,
        appliance_id: &str,
        order_id: &str,
        now_us: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO scan_orders (order_id, vm_id, appliance_id, created_at_us) VALUES (?, ?, ?, ?)",
        )
        .bind(order_id)
        .bind(vm_id)
        .bind(appliance_id)
        .bind(now_us)
        .execute(&mut *tx)
        .await?;
        let (mut paths, _) = detections_since_release(&mut tx, vm_id).await?;
        tx.commit().await?;
        paths.truncate(MAX_RECHECK);
        Ok(paths)
    }

    /// Records an operator's exception: `path` with content `sha256` in
    /// `vm_id` may be skipped by a scan that releases the VM.
    pub async fn add_exception(
        &self,
        vm_id: &str,
        path: &str,
        sha256: &str,
        reason: &str,
        who: &str,
        now_us: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO scan_exceptions (vm_id, path, sha256, reason, created_by, created_at_us)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT(vm_id, path, sha256) DO UPDATE SET reason = excluded.reason,
               created_by = excluded.created_by, created_at_us = excluded.created_at_us",
        )
        .bind(vm_id)
        .bind(path)
        .bind(sha256.to_ascii_lowercase())
        .bind(reason)
        .bind(who)
        .bind(now_us)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
