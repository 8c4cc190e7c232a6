//! The store against its contract: one quarantine per outbreak,
//! replays that change nothing, overrides, and concurrent writers.
use std::path::Path;

use giva_proto::manager::{Event, EventKind, VmInfo};

use crate::config::QuarantineConfig;
use crate::quarantine::{Rules, TagOp, VmState};
use crate::store::{ActionOutcome, ActionStatus, Override, Store, Stored};

fn rules() -> Rules {
    Rules {
        policy: QuarantineConfig::default(),
        actions: vec!["nsx".into(), "webhook".into()],
    }
}

fn detection(id: &str, vm: &str) -> Event {
    Event {
        event_id: id.into(),
        kind: EventKind::Detection as i32,
        vm_id: vm.into(),
        appliance_id: "a".into(),
        signatures: vec!["Eicar".into()],
        detected_at_us: 10,
        ..Event::default()
    }
}

#[tokio::test]
async fn one_quarantine_per_outbreak_on_a_vm_and_replays_change_nothing() {
    let store = Store::open(Path::new(":memory:")).await.unwrap();
    let evs = [detection("e1", "vm"), detection("e2", "vm")];
    let out = store
        .insert_events(&evs, 100, &rules(), false)
        .await
        .unwrap();
    assert_eq!(out.stored, [Stored::New, Stored::New]);
    assert_eq!(out.queued.len(), 2, "one row per configured action");
    assert!(out.queued.iter().all(|r| r.op == TagOp::Tag));
    let again = store
        .insert_events(&evs, 200, &rules(), false)
        .await
        .unwrap();
    assert!(again.queued.is_empty());
    assert_eq!(store.transitions(Some("vm"), 10).await.unwrap().len(), 1);
    assert_eq!(store.pending_actions().await.unwrap().len(), 2);

    let applied = ActionOutcome {
        status: ActionStatus::Applied,
        attempts: 1,
        detail: "applied".into(),
    };
    store
        .finish_actions(&[(out.queued[0].id, applied.clone())], 300)
        .await
        .unwrap();
    let vm = store.vm("vm").await.unwrap().unwrap();
    assert!(!vm.tagged, "tagged once every action applied");
    assert!(
        vm.last_action
            .contains("nsx applied (1 attempt); webhook pending")
    );
    store
        .finish_actions(&[(out.queued[1].id, applied.clone())], 400)
        .await
        .unwrap();
    let vm = store.vm("vm").await.unwrap().unwrap();
    assert!(vm.tagged);
    assert_eq!((VmState::of(&vm), vm.detections), (VmState::Infected, 2));
    assert!(store.pending_actions().await.unwrap().is_empty());
}

#[tokio::test]
async fn operator_untag_queues_an_untag_and_cleans() {
    let store = Store::open(Path::new(":memory:")).await.unwrap();
    store
        .insert_events(&[detection("e1", "vm")], 100, &rules(), false)
        .await
        .unwrap();
    let (vm, queued) = store
        .apply_override("vm", Override::Untag, &rules(), 200)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(VmState::of(&vm), VmState::Clean);
    assert_eq!(queued.len(), 2);
    assert!(queued.iter().all(|r| r.op == TagOp::Untag));
    assert!(
        store
            .apply_override("nope", Override::Untag, &rules(), 200)
            .await
            .unwrap()
            .is_none()
    );
}

/// Heartbeats (read, then write), detections and operator overrides
/// arrive on different connections at once. None of them may fail with
/// "database is locked": each write transaction waits for the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_a_fresh_file_never_see_a_locked_database() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let store = Store::open(&dir.path().join(format!("m{round}.sqlite")))
            .await
            .unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..8 {
            let store = store.clone();
            tasks.spawn(async move {
                for i in 0..25 {
                    let vm = format!("vm-{}", i % 3);
                    match w % 3 {
                        0 => {
                            let info = VmInfo {
                                vm_id: vm,
                                ..VmInfo::default()
                            };
                            store.upsert_vms("a", &[info], i).await.unwrap();
                        }
                        1 => {
                            let ev = detection(&format!("e-{w}-{i}"), &vm);
                            store
                                .insert_events(&[ev], i, &rules(), false)
                                .await
                                .unwrap();
                        }
                        _ => {
                            store
                                .apply_override(&vm, Override::Untag, &rules(), i)
                                .await
                                .unwrap();
                        }
                    }
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        store.close().await;
    }
}

/// The schema of giva-manager before its store was versioned: the tables
/// of migration 1, created without a `_sqlx_migrations` table.
const UNVERSIONED_SCHEMA: &[&str] = &[
    "CREATE TABLE events (event_id TEXT PRIMARY KEY, kind INTEGER NOT NULL,
        appliance_id TEXT NOT NULL, vm_id TEXT NOT NULL, detected_at_us INTEGER NOT NULL,
        received_at_us INTEGER NOT NULL, payload BLOB NOT NULL)",
    "CREATE INDEX events_by_received ON events(received_at_us)",
    "CREATE INDEX events_by_vm ON events(vm_id, received_at_us)",
    "CREATE TABLE vms (vm_id TEXT PRIMARY KEY, payload BLOB NOT NULL)",
    "CREATE TABLE quarantine (vm_id TEXT PRIMARY KEY, tag_wanted INTEGER NOT NULL,
        infected_at_us INTEGER NOT NULL)",
    "CREATE TABLE vm_transitions (id INTEGER PRIMARY KEY AUTOINCREMENT, vm_id TEXT NOT NULL,
        from_state TEXT NOT NULL, to_state TEXT NOT NULL, cause TEXT NOT NULL,
        event_id TEXT NOT NULL, at_us INTEGER NOT NULL)",
    "CREATE INDEX transitions_by_vm ON vm_transitions(vm_id, id)",
    "CREATE TABLE actions (id INTEGER PRIMARY KEY AUTOINCREMENT, transition_id INTEGER NOT NULL,
        vm_id TEXT NOT NULL, action TEXT NOT NULL, op TEXT NOT NULL, status TEXT NOT NULL,
        attempts INTEGER NOT NULL, detail TEXT NOT NULL, payload TEXT NOT NULL,
        created_at_us INTEGER NOT NULL, updated_at_us INTEGER NOT NULL)",
    "CREATE INDEX actions_by_status ON actions(status, id)",
    "CREATE INDEX actions_by_vm ON actions(vm_id, status)",
    "CREATE INDEX actions_by_transition ON actions(transition_id)",
];

async fn raw(path: &Path) -> sqlx::SqliteConnection {
    use sqlx::ConnectOptions;
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_store_from_before_versioned_schemas_is_adopted_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manager.sqlite");
    {
        // Written by the previous release: its schema, a detection that
        // quarantined vm-1, and a pending tag action.
        let store_then = Store::open(Path::new(":memory:")).await.unwrap();
        let out = store_then
            .insert_events(&[detection("e1", "vm-1")], 100, &rules(), false)
            .await
            .unwrap();
        assert_eq!(out.queued.len(), 2);
        let mut conn = raw(&path).await;
        for stmt in UNVERSIONED_SCHEMA {
            sqlx::query(stmt).execute(&mut conn).await.unwrap();
        }
        // Copy the rows over as the old build would have left them.
        let event = detection("e1", "vm-1");
        sqlx::query("INSERT INTO events VALUES ('e1', ?, 'a', 'vm-1', 10, 100, ?)")
            .bind(EventKind::Detection as i32)
            .bind(prost::Message::encode_to_vec(&event))
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO vm_transitions (vm_id, from_state, to_state, cause, event_id, at_us)
             VALUES ('vm-1', 'clean', 'infected', 'detection', 'e1', 100)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO actions (transition_id, vm_id, action, op, status, attempts, detail,
             payload, created_at_us, updated_at_us)
             VALUES (1, 'vm-1', 'nsx', 'tag', 'pending', 2, 'HTTP 503', '{}', 100, 150)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let store = Store::open(&path).await.expect("the old store opens");
    let events = store
        .events(&crate::store::EventFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "the event survived");
    let pending = store.pending_actions().await.unwrap();
    assert_eq!(pending.len(), 1, "the pending action survived");
    assert_eq!((pending[0].op, pending[0].attempts), (TagOp::Tag, 2));
    let t = store.transitions(Some("vm-1"), 10).await.unwrap();
    assert_eq!((t[0].from, t[0].to), (VmState::Clean, VmState::Infected));
    store.close().await;
    // It is adopted as version 1 and then migrated; opening again changes
    // nothing.
    let mut conn = raw(&path).await;
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(versions, [1, 2, 3]);
    drop(conn);
    Store::open(&path).await.expect("opens again").close().await;
}

#[tokio::test]
async fn a_store_written_by_a_newer_manager_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manager.sqlite");
    Store::open(&path).await.unwrap().close().await;
    let mut conn = raw(&path).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (9999, 'from the future', 1, x'00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    drop(conn);
    let err = Store::open(&path).await.unwrap_err();
    assert!(
        err.to_string().contains("newer giva-manager") && err.to_string().contains("9999"),
        "{err}"
    );
}
