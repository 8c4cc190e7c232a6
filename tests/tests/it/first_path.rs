//! The first path, end to end: a file in a guest reaches the appliance, is
//! scanned, is denied, and the manager hears of it at once.

use std::time::Duration;

use giva_proto::manager::manager_service_client::ManagerServiceClient;
use giva_proto::manager::{Event, EventKind, HeartbeatRequest, NotifyRequest};
use giva_proto::shim::shim_service_client::ShimServiceClient;
use giva_proto::shim::{
    ContentChunk, EventKind as ShimEventKind, FileEvent, FileIdentity, GuestMessage,
    RegisterRequest, ScanRequest, SessionOpen, VerdictKind, VmIdentity, appliance_message,
    guest_message,
};
use giva_shim::scan::ScanConfig;
use tonic::Code;

use crate::common::{
    EICAR, config_with_manager, detections, start_appliance, start_manager, write,
};

fn vm(id: &str) -> VmIdentity {
    VmIdentity {
        vm_id: id.into(),
        name: format!("{id}-name"),
        ..VmIdentity::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eicar_is_denied_and_reported_once_clean_file_is_allowed() {
    let (manager, mgr) = start_manager().await;
    let (appliance, _app) = start_appliance(config_with_manager(&manager.url())).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let eicar = write(dir.path(), "eicar.com", EICAR);
    let clean = write(dir.path(), "clean.txt", b"nothing to see here, just text\n");

    let mut results = Vec::new();
    let config = ScanConfig::new(
        appliance.url(),
        vm("vm-e2e"),
        vec![dir.path().to_path_buf()],
    );
    let summary = giva_shim::scan::run(&config, |r| results.push(r.clone()), |_, _| {})
        .await
        .expect("scan");
    assert_eq!(summary.scanned, 2);
    assert_eq!(summary.infected, 1);
    assert_eq!(summary.exit_code(), 1);
    let by_path = |p: &std::path::Path| {
        results
            .iter()
            .find(|r| r.path == p)
            .cloned()
            .expect("a result per file")
    };
    let e = by_path(&eicar);
    assert_eq!(e.status, "found");
    assert_eq!(e.signatures, vec!["Eicar-Test-Signature".to_string()]);
    assert_eq!(
        e.line(),
        format!("{}: Eicar-Test-Signature FOUND", eicar.display())
    );
    assert_eq!(by_path(&clean).status, "ok");

    // The detection reaches the manager without waiting for a heartbeat
    // (the heartbeat interval is 10 minutes here).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while detections(&mgr).await.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Give a duplicate the chance to arrive before checking there is none.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stored = detections(&mgr).await;
    assert_eq!(stored.len(), 1, "exactly one detection event: {stored:?}");
    let ev = stored[0].event.clone().expect("event");
    assert_eq!(ev.vm_id, "vm-e2e");
    assert_eq!(ev.vm_name, "vm-e2e-name");
    assert_eq!(ev.path, eicar.to_string_lossy());
    assert_eq!(ev.signatures, vec!["Eicar-Test-Signature".to_string()]);
    assert!(ev.detected_at_us > 0 && stored[0].received_at_us >= ev.detected_at_us);

    appliance.stop().await;
    manager.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_event_gets_deny_verdict_over_the_raw_protocol() {
    let (appliance, _app) = start_appliance(giva_appliance::config::Config::default()).await;
    let mut client = ShimServiceClient::connect(appliance.url())
        .await
        .expect("connect");
    let reg = client
        .register(RegisterRequest {
            vm: Some(vm("vm-raw")),
        })
        .await
        .expect("register")
        .into_inner();
    assert!(!reg.session_id.is_empty());
    assert!(reg.policy.is_some_and(|p| p.deny_on_detection));

    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let open = guest_message::Msg::Open(SessionOpen {
        session_id: reg.session_id,
    });
    tx.send(GuestMessage { msg: Some(open) })
        .await
        .expect("send");
    let mut inbound = client
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("session")
        .into_inner();
    let event = FileEvent {
        seq: 7,
        kind: ShimEventKind::Open as i32,
        path: "/home/user/eicar.com".into(),
        identity: Some(FileIdentity {
            size: EICAR.len() as u64,
            ..FileIdentity::default()
        }),
        blocking: true,
        full_scan_id: 0,
    };
    tx.send(GuestMessage {
        msg: Some(guest_message::Msg::Event(event)),
    })
    .await
    .expect("send");
    let req = inbound.message().await.expect("stream").expect("a message");
    let Some(appliance_message::Msg::ContentRequest(req)) = req.msg else {
        panic!("expected a content request, got {req:?}");
    };
    assert_eq!((req.seq, req.offset), (7, 0));
    // Two chunks, to exercise streaming across a boundary.
    for (offset, part, last) in [(0usize, &EICAR[..30], false), (30, &EICAR[30..], true)] {
        let chunk = ContentChunk {
            seq: 7,
            offset: offset as u64,
            data: part.to_vec(),
            last,
        };
        tx.send(GuestMessage {
            msg: Some(guest_message::Msg::Chunk(chunk)),
        })
        .await
        .expect("send");
    }
    let v = inbound.message().await.expect("stream").expect("a verdict");
    let Some(appliance_message::Msg::Verdict(v)) = v.msg else {
        panic!("expected a verdict")
    };
    assert_eq!(v.seq, 7);
    assert_eq!(v.kind, VerdictKind::Deny as i32);
    assert_eq!(v.detections[0].signature, "Eicar-Test-Signature");
    assert!(!v.database_version.is_empty());
    appliance.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_shim_requests_get_grpc_errors() {
    let (appliance, _app) = start_appliance(giva_appliance::config::Config::default()).await;
    let mut client = ShimServiceClient::connect(appliance.url())
        .await
        .expect("connect");

    let err = client
        .register(RegisterRequest { vm: None })
        .await
        .expect_err("no identity");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = client
        .register(RegisterRequest { vm: Some(vm("")) })
        .await
        .expect_err("empty id");
    assert_eq!(err.code(), Code::InvalidArgument);
    let long = VmIdentity {
        name: "n".repeat(10_000),
        ..vm("vm-long")
    };
    let err = client
        .register(RegisterRequest { vm: Some(long) })
        .await
        .expect_err("long name");
    assert_eq!(err.code(), Code::InvalidArgument);

    // A session must start with `open`, and with a known session id.
    let status = session_error(
        &mut client,
        vec![GuestMessage {
            msg: Some(guest_message::Msg::Chunk(ContentChunk::default())),
        }],
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let status = session_error(&mut client, vec![open_msg("no-such-session")]).await;
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    // Content nobody asked for, and a path over the limit, end the stream.
    let reg = client
        .register(RegisterRequest {
            vm: Some(vm("vm-bad")),
        })
        .await
        .expect("register");
    let sid = reg.into_inner().session_id;
    let stray = GuestMessage {
        msg: Some(guest_message::Msg::Chunk(ContentChunk {
            seq: 99,
            ..ContentChunk::default()
        })),
    };
    let status = session_error(&mut client, vec![open_msg(&sid), stray]).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("99"), "{status:?}");

    let reg = client
        .register(RegisterRequest {
            vm: Some(vm("vm-bad2")),
        })
        .await
        .expect("register");
    let sid = reg.into_inner().session_id;
    let huge = FileEvent {
        seq: 1,
        kind: ShimEventKind::Open as i32,
        path: "/".repeat(100_000),
        identity: Some(FileIdentity {
            size: 10,
            ..FileIdentity::default()
        }),
        ..FileEvent::default()
    };
    let status = session_error(
        &mut client,
        vec![
            open_msg(&sid),
            GuestMessage {
                msg: Some(guest_message::Msg::Event(huge)),
            },
        ],
    )
    .await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // The unary scan works on a buffer and refuses nothing valid.
    let v = client
        .scan(ScanRequest {
            vm_id: String::new(),
            name: "buf".into(),
            data: EICAR.to_vec(),
        })
        .await
        .expect("scan")
        .into_inner()
        .verdict
        .expect("verdict");
    assert_eq!(v.kind, VerdictKind::Deny as i32);
    // A gzipped EICAR too: the unary scan opens containers as a session
    // does (and does not cache such a buffer as clean).
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, EICAR).expect("gzip");
    let gz = gz.finish().expect("gzip");
    for _ in 0..2 {
        let v = client
            .scan(ScanRequest {
                vm_id: String::new(),
                name: "eicar.com.gz".into(),
                data: gz.clone(),
            })
            .await
            .expect("scan")
            .into_inner()
            .verdict
            .expect("verdict");
        assert_eq!(v.kind, VerdictKind::Deny as i32, "{v:?}");
    }
    appliance.stop().await;
}

fn open_msg(session_id: &str) -> GuestMessage {
    GuestMessage {
        msg: Some(guest_message::Msg::Open(SessionOpen {
            session_id: session_id.into(),
        })),
    }
}

/// Sends `messages` on a new session and returns the status that ends it.
async fn session_error(
    client: &mut ShimServiceClient<tonic::transport::Channel>,
    messages: Vec<GuestMessage>,
) -> tonic::Status {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    for m in messages {
        tx.send(m).await.expect("queue");
    }
    let result = client
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    let mut inbound = match result {
        Err(status) => return status,
        Ok(r) => r.into_inner(),
    };
    let outcome = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match inbound.message().await {
                Err(status) => return status,
                Ok(None) => return tonic::Status::ok("stream ended without an error"),
                Ok(Some(_)) => continue,
            }
        }
    })
    .await;
    drop(tx);
    outcome.expect("the appliance answers within 5 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_manager_requests_get_grpc_errors_and_replays_are_stored_once() {
    let (manager, mgr) = start_manager().await;
    let mut client = ManagerServiceClient::connect(manager.url())
        .await
        .expect("connect");
    let err = client
        .notify(NotifyRequest {
            appliance_id: String::new(),
            events: vec![],
        })
        .await
        .expect_err("no appliance id");
    assert_eq!(err.code(), Code::InvalidArgument);
    let nameless = Event {
        kind: EventKind::Detection as i32,
        ..Event::default()
    };
    let err = client
        .notify(NotifyRequest {
            appliance_id: "a".into(),
            events: vec![nameless],
        })
        .await
        .expect_err("no event id");
    assert_eq!(err.code(), Code::InvalidArgument);
    let unknown_kind = Event {
        event_id: "x".into(),
        kind: 999,
        ..Event::default()
    };
    let err = client
        .notify(NotifyRequest {
            appliance_id: "a".into(),
            events: vec![unknown_kind],
        })
        .await
        .expect_err("unknown kind");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = client
        .heartbeat(HeartbeatRequest::default())
        .await
        .expect_err("no appliance id");
    assert_eq!(err.code(), Code::InvalidArgument);

    let ev = Event {
        event_id: "a-1".into(),
        kind: EventKind::Detection as i32,
        vm_id: "vm".into(),
        ..Event::default()
    };
    for _ in 0..3 {
        let acked = client
            .notify(NotifyRequest {
                appliance_id: "a".into(),
                events: vec![ev.clone()],
            })
            .await
            .expect("notify")
            .into_inner()
            .acked_event_ids;
        assert_eq!(
            acked,
            vec!["a-1".to_string()],
            "a replay is acknowledged again"
        );
    }
    assert_eq!(detections(&mgr).await.len(), 1, "and stored once");
    manager.stop().await;
}
