//! Events: storing them (deduplicated by id) together with what they do to
//! their VM's quarantine, in one transaction; operators' overrides; and
//! listing events.

use giva_proto::manager::{Action, Event, EventKind, StoredEvent, VmState as VmRecord};
use prost::Message;
use serde::Serialize;
use sqlx::Row;

use crate::quarantine::{self, Decision, Rules, TagOp, VmState};
use crate::store::actions::summarize;
use crate::store::db::Store;
use crate::store::records::{
    ActionRow, ActionStatus, EventFilter, Ingested, Override, StoreError, Stored,
};
use crate::store::scans;
use crate::store::vms::{decode, load_quarantine, load_vm, new_vm, save_quarantine, save_vm};
use crate::time::format_us;

/// The document an action receives (see [`ActionRow::payload`]).
#[derive(Debug, Serialize)]
struct Payload<'a> {
    op: &'static str,
    vm_id: &'a str,
    vm_name: &'a str,
    appliance_id: &'a str,
    from_state: &'a str,
    to_state: &'a str,
    cause: &'a str,
    event_id: &'a str,
    signatures: &'a [String],
    path: &'a str,
    action: &'a str,
    detected_at_us: i64,
    transition_id: i64,
    at_us: i64,
}

/// Records decision `d` for `vm`: a transition row, the new state, and the
/// tag operation (pending action rows, or directly when no action is
/// configured). Returns the queued actions.
async fn record(
    conn: &mut sqlx::SqliteConnection,
    rules: &Rules,
    vm: &mut VmRecord,
    d: &Decision,
    ev: Option<&Event>,
    now_us: i64,
) -> Result<Vec<ActionRow>, StoreError> {
    let vm_id = vm.vm.as_ref().map(|v| v.vm_id.clone()).unwrap_or_default();
    let event_id = ev.map(|e| e.event_id.as_str()).unwrap_or("");
    let transition_id = sqlx::query(
        "INSERT INTO vm_transitions (vm_id, from_state, to_state, cause, event_id, at_us) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&vm_id)
    .bind(&vm.state)
    .bind(d.to.as_str())
    .bind(&d.cause)
    .bind(event_id)
    .bind(now_us)
    .execute(&mut *conn)
    .await?
    .last_insert_rowid();
    let from = std::mem::replace(&mut vm.state, d.to.as_str().to_string());
    let Some(op) = d.op else {
        return Ok(Vec::new());
    };
    if rules.actions.is_empty() {
        vm.tagged = op == TagOp::Tag;
        vm.last_action = format!(
            "{} recorded at {}; no tagging action configured",
            op.as_str(),
            format_us(now_us)
        );
        return Ok(Vec::new());
    }
    let action = ev
        .and_then(|e| Action::try_from(e.action).ok())
        .filter(|a| *a != Action::Unspecified)
        .map(|a| a.as_str_name().trim_start_matches("ACTION_").to_lowercase())
        .unwrap_or_default();
    let payload = serde_json::to_string(&Payload {
        op: op.as_str(),
        vm_id: &vm_id,
        vm_name: vm.vm.as_ref().map(|v| v.name.as_str()).unwrap_or(""),
        appliance_id: &vm.appliance_id,
        from_state: &from,
        to_state: d.to.as_str(),
        cause: &d.cause,
        event_id,
        signatures: ev.map(|e| e.signatures.as_slice()).unwrap_or(&[]),
        path: ev.map(|e| e.path.as_str()).unwrap_or(""),
        action: &action,
        detected_at_us: ev.map_or(0, |e| e.detected_at_us),
        transition_id,
        at_us: now_us,
    })
    .map_err(|e| StoreError::Corrupt {
        what: "action payload".into(),
        reason: e.to_string(),
    })?;
    let mut out = Vec::with_capacity(rules.actions.len());
    for name in &rules.actions {
        let id = sqlx::query(
            "INSERT INTO actions (transition_id, vm_id, action, op, status, attempts, detail, payload, created_at_us, updated_at_us)
             VALUES (?, ?, ?, ?, ?, 0, '', ?, ?, ?)",
        )
        .bind(transition_id)
        .bind(&vm_id)
        .bind(name)
        .bind(op.as_str())
        .bind(ActionStatus::Pending.as_str())
        .bind(&payload)
        .bind(now_us)
        .bind(now_us)
        .execute(&mut *conn)
        .await?
        .last_insert_rowid();
        out.push(ActionRow {
            id,
            transition_id,
            vm_id: vm_id.clone(),
            action: name.clone(),
            op,
            status: ActionStatus::Pending,
            attempts: 0,
            detail: String::new(),
            payload: payload.clone(),
            created_at_us: now_us,
            updated_at_us: now_us,
        });
    }
    vm.last_action = summarize(&out, now_us);
    Ok(out)
}

/// Inserts one event: `New`; `Duplicate` when the same event (same id,
/// same content) is stored already; `Collision` when its id holds another
/// content, and it is then stored under its id plus a digest of its
/// content, so that a pre-empted id cannot make a real event vanish.
async fn insert_event(
    conn: &mut sqlx::SqliteConnection,
    ev: &Event,
    payload: &[u8],
    received_at_us: i64,
) -> Result<Stored, StoreError> {
    let insert = |id: String| {
        sqlx::query(
            "INSERT OR IGNORE INTO events (event_id, kind, appliance_id, vm_id, detected_at_us, received_at_us, payload)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(ev.kind)
        .bind(&ev.appliance_id)
        .bind(&ev.vm_id)
        .bind(ev.detected_at_us)
        .bind(received_at_us)
        .bind(payload)
    };
    let same = |existing: Option<sqlx::sqlite::SqliteRow>| {
        existing.is_some_and(|r| r.get::<&[u8], _>(0) == payload)
    };
    if insert(ev.event_id.clone())
        .execute(&mut *conn)
        .await?
        .rows_affected()
        == 1
    {
        return Ok(Stored::New);
    }
    let existing = sqlx::query("SELECT payload FROM events WHERE event_id = ?")
        .bind(&ev.event_id)
        .fetch_optional(&mut *conn)
        .await?;
    if same(existing) {
        return Ok(Stored::Duplicate);
    }
    let digest = <sha2::Sha256 as sha2::Digest>::digest(payload);
    let stored_as = format!("{}~{}", ev.event_id, hex::encode(&digest[..8]));
    if insert(stored_as.clone())
        .execute(&mut *conn)
        .await?
        .rows_affected()
        == 1
    {
        return Ok(Stored::Collision { stored_as });
    }
    // This very event arrived before, and collided then too.
    Ok(Stored::Duplicate)
}

impl Store {
    /// Commits events that are new (by id), updates their VMs and applies
    /// the quarantine `rules`, in one transaction. Returns, per event,
    /// whether it was new, and the actions queued.
    pub async fn insert_events(
        &self,
        events: &[Event],
        received_at_us: i64,
        rules: &Rules,
        appliances_authenticated: bool,
    ) -> Result<Ingested, StoreError> {
        let mut tx = self.write_tx().await?;
        let mut out = Ingested {
            stored: Vec::with_capacity(events.len()),
            queued: Vec::new(),
        };
        for ev in events {
            let payload = ev.encode_to_vec();
            let stored = insert_event(&mut tx, ev, &payload, received_at_us).await?;
            let duplicate = stored == Stored::Duplicate;
            out.stored.push(stored);
            if duplicate {
                continue;
            }
            if ev.vm_id.is_empty() {
                continue;
            }
            let mut vm = load_vm(&mut tx, &ev.vm_id)
                .await?
                .unwrap_or_else(|| new_vm(&ev.vm_id));
            if let Some(info) = vm.vm.as_mut()
                && info.name.is_empty()
            {
                info.name = ev.vm_name.clone();
            }
            if vm.appliance_id.is_empty() {
                vm.appliance_id = ev.appliance_id.clone();
            }
            vm.last_seen_us = vm.last_seen_us.max(ev.detected_at_us);
            if ev.kind == EventKind::Detection as i32 {
                vm.detections += 1;
            }
            let scan = quarantine::scan_record(ev);
            if ev.kind == EventKind::Detection as i32 || scan.is_some() {
                let mut q = load_quarantine(&mut tx, &ev.vm_id).await?;
                let evidence = match scan {
                    Some(s) if VmState::of(&vm) != VmState::Clean => Some(
                        scans::evidence(
                            &mut tx,
                            &vm,
                            &ev.appliance_id,
                            s,
                            appliances_authenticated,
                        )
                        .await?,
                    ),
                    _ => None,
                };
                if let Some(d) =
                    quarantine::on_event(&rules.policy, &vm, &mut q, ev, evidence.as_ref())
                {
                    if let Some(s) = scan
                        && d.to == VmState::Clean
                        && s.ordered_by == "manager"
                    {
                        scans::use_order(&mut tx, &s.order_id, &ev.event_id).await?;
                    }
                    let queued =
                        record(&mut tx, rules, &mut vm, &d, Some(ev), received_at_us).await?;
                    out.queued.extend(queued);
                }
                save_quarantine(&mut tx, &ev.vm_id, &q).await?;
            }
            save_vm(&mut tx, &vm).await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Applies an operator's override to a VM; `None` if the VM is unknown.
    /// Returns the VM afterwards and the actions queued.
    pub async fn apply_override(
        &self,
        vm_id: &str,
        what: Override,
        rules: &Rules,
        now_us: i64,
    ) -> Result<Option<(VmRecord, Vec<ActionRow>)>, StoreError> {
        let mut tx = self.write_tx().await?;
        let Some(mut vm) = load_vm(&mut tx, vm_id).await? else {
            return Ok(None);
        };
        let mut q = load_quarantine(&mut tx, vm_id).await?;
        let d = match what {
            Override::Untag => quarantine::on_untag(&mut q),
            Override::Scan => quarantine::on_scan_request(),
        };
        let queued = record(&mut tx, rules, &mut vm, &d, None, now_us).await?;
        save_quarantine(&mut tx, vm_id, &q).await?;
        save_vm(&mut tx, &vm).await?;
        tx.commit().await?;
        Ok(Some((vm, queued)))
    }

    /// Lists events.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<StoredEvent>, StoreError> {
        let limit = i64::try_from(filter.limit.max(1)).unwrap_or(i64::MAX);
        let rows = match &filter.vm_id {
            Some(vm) => sqlx::query(
                "SELECT payload, received_at_us FROM events WHERE vm_id = ? AND received_at_us >= ?
                     ORDER BY received_at_us DESC, rowid DESC LIMIT ?",
            )
            .bind(vm)
            .bind(filter.since_us)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?,
            None => {
                sqlx::query(
                    "SELECT payload, received_at_us FROM events WHERE received_at_us >= ?
                     ORDER BY received_at_us DESC, rowid DESC LIMIT ?",
                )
                .bind(filter.since_us)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(StoredEvent {
                    event: Some(decode::<Event>("event", r.get::<&[u8], _>(0))?),
                    received_at_us: r.get(1),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.reverse();
        Ok(out)
    }
}
