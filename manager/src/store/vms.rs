//! The VM inventory: VM records (the protocol's `VmState` message, called `VmRecord` here) and
//! what the quarantine remembers of each VM.

use giva_proto::manager::{VmInfo, VmState as VmRecord};
use prost::Message;
use sqlx::Row;

use crate::quarantine::{Quarantine, VmState};
use crate::store::db::Store;
use crate::store::records::StoreError;

pub(crate) fn decode<M: Message + Default>(what: &str, bytes: &[u8]) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|e| StoreError::Corrupt {
        what: what.to_string(),
        reason: e.to_string(),
    })
}

pub(crate) fn new_vm(vm_id: &str) -> VmRecord {
    VmRecord {
        vm: Some(VmInfo {
            vm_id: vm_id.to_string(),
            ..VmInfo::default()
        }),
        state: VmState::Clean.as_str().to_string(),
        ..VmRecord::default()
    }
}

pub(crate) async fn load_vm(
    conn: &mut sqlx::SqliteConnection,
    vm_id: &str,
) -> Result<Option<VmRecord>, StoreError> {
    let row = sqlx::query("SELECT payload FROM vms WHERE vm_id = ?")
        .bind(vm_id)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| decode::<VmRecord>(vm_id, r.get::<&[u8], _>(0)))
        .transpose()
}

pub(crate) async fn save_vm(
    conn: &mut sqlx::SqliteConnection,
    vm: &VmRecord,
) -> Result<(), StoreError> {
    let id = vm.vm.as_ref().map(|v| v.vm_id.clone()).unwrap_or_default();
    sqlx::query("INSERT INTO vms (vm_id, payload) VALUES (?, ?) ON CONFLICT(vm_id) DO UPDATE SET payload = excluded.payload")
        .bind(id)
        .bind(vm.encode_to_vec())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(crate) async fn load_quarantine(
    conn: &mut sqlx::SqliteConnection,
    vm_id: &str,
) -> Result<Quarantine, StoreError> {
    let row = sqlx::query("SELECT tag_wanted, infected_at_us FROM quarantine WHERE vm_id = ?")
        .bind(vm_id)
        .fetch_optional(&mut *conn)
        .await?;
    let pending: bool =
        sqlx::query("SELECT EXISTS(SELECT 1 FROM actions WHERE vm_id = ? AND status = 'pending')")
            .bind(vm_id)
            .fetch_one(&mut *conn)
            .await?
            .get(0);
    Ok(Quarantine {
        tag_wanted: row.as_ref().is_some_and(|r| r.get::<bool, _>(0)),
        infected_at_us: row.as_ref().map_or(0, |r| r.get(1)),
        action_pending: pending,
    })
}

pub(crate) async fn save_quarantine(
    conn: &mut sqlx::SqliteConnection,
    vm_id: &str,
    q: &Quarantine,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO quarantine (vm_id, tag_wanted, infected_at_us) VALUES (?, ?, ?)
         ON CONFLICT(vm_id) DO UPDATE SET tag_wanted = excluded.tag_wanted, infected_at_us = excluded.infected_at_us",
    )
    .bind(vm_id)
    .bind(q.tag_wanted)
    .bind(q.infected_at_us)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Store {
    /// Records the VMs an appliance reported in a heartbeat.
    pub async fn upsert_vms(
        &self,
        appliance_id: &str,
        vms: &[VmInfo],
        now_us: i64,
    ) -> Result<(), StoreError> {
        if vms.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        for info in vms {
            let mut vm = load_vm(&mut tx, &info.vm_id)
                .await?
                .unwrap_or_else(|| new_vm(&info.vm_id));
            vm.vm = Some(info.clone());
            vm.appliance_id = appliance_id.to_string();
            vm.last_seen_us = now_us;
            save_vm(&mut tx, &vm).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Lists every known VM.
    pub async fn vms(&self) -> Result<Vec<VmRecord>, StoreError> {
        let rows = sqlx::query("SELECT vm_id, payload FROM vms ORDER BY vm_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| decode::<VmRecord>(r.get::<&str, _>(0), r.get::<&[u8], _>(1)))
            .collect()
    }

    /// One VM's state.
    pub async fn vm(&self, vm_id: &str) -> Result<Option<VmRecord>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        load_vm(&mut conn, vm_id).await
    }

    /// Replaces one VM's state.
    pub async fn put_vm(&self, vm: &VmRecord) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        save_vm(&mut conn, vm).await
    }
}
