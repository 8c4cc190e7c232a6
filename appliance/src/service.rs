//! The `giva.shim.v1` gRPC service: validates requests, converts them, and
//! hands work to sessions and the engine.

use std::pin::Pin;
use std::sync::Arc;

use giva_proto::manager::EventKind as MgrEventKind;
use giva_proto::now_us;
use giva_proto::shim::shim_service_server::ShimService;
use giva_proto::shim::{
    ApplianceMessage, GuestMessage, RegisterRequest, RegisterResponse, ScanRequest, ScanResponse,
    VerdictKind,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use tracing::info;

use giva_engine::cache::content_key;
use giva_engine::{CachedVerdict, Outcome, Priority, ScanResult};
use sha2::{Digest, Sha256};

use crate::appliance::Appliance;
use crate::identity::{certified_vm, check_claim};
use crate::registry::AttachError;
use crate::scan::{content_limits, scan_options, verdict_for};

/// Longest VM id, name, image id, OS or version string accepted.
pub const MAX_IDENTITY_FIELD: usize = 256;

/// The tonic service around a shared [`Appliance`].
#[derive(Debug, Clone)]
pub struct ShimGrpc(pub Arc<Appliance>);

fn check_field(name: &str, value: &str) -> Result<(), Status> {
    if value.len() > MAX_IDENTITY_FIELD {
        return Err(Status::invalid_argument(format!(
            "{name} is {} bytes long; at most {MAX_IDENTITY_FIELD}",
            value.len()
        )));
    }
    Ok(())
}

impl ShimGrpc {
    /// A clone's enrollment, answered here: the token checked with the
    /// clone key, the certificate signed with the delegated CA.
    fn enroll_clone(
        &self,
        token: &str,
        csr_pem: &str,
        caller: &str,
    ) -> Result<Response<giva_proto::shim::EnrollResponse>, Status> {
        let Some(signer) = &self.0.clones else {
            return Err(Status::failed_precondition(
                "this appliance signs no clones' certificates (no [clones] delegated CA)",
            ));
        };
        match signer.sign(token, csr_pem) {
            Ok((vm_id, cert_pem)) => {
                self.0.stats.clone_enrollments.inc();
                tracing::info!(%vm_id, %caller, "clone enrolled");
                let server = &self.0.config.server;
                let ca = if server.client_ca_file.as_os_str().is_empty() {
                    &self.0.config.manager.ca_file
                } else {
                    &server.client_ca_file
                };
                Ok(Response::new(giva_proto::shim::EnrollResponse {
                    cert_pem,
                    ca_pem: std::fs::read_to_string(ca).unwrap_or_default(),
                    crl_pem: std::fs::read_to_string(&server.crl_file).unwrap_or_default(),
                    vm_id,
                }))
            }
            Err(status) => {
                self.0.stats.identity_refused("clone_token");
                tracing::warn!(%caller, error = %status.message(), "clone enrollment refused");
                Err(status)
            }
        }
    }
}

#[tonic::async_trait]
impl ShimService for ShimGrpc {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let certified = certified_vm(&self.0, &request)?;
        let vm = request
            .into_inner()
            .vm
            .ok_or_else(|| Status::invalid_argument("register without a VM identity"))?;
        if vm.vm_id.is_empty() {
            return Err(Status::invalid_argument("vm_id is required"));
        }
        check_claim(&self.0, certified.as_deref(), &vm.vm_id)?;
        for (name, value) in [
            ("vm_id", &vm.vm_id),
            ("name", &vm.name),
            ("image_id", &vm.image_id),
            ("os", &vm.os),
            ("agent_version", &vm.agent_version),
            ("group", &vm.group),
        ] {
            check_field(name, value)?;
        }
        let app = &self.0;
        let (session_id, vm) = app.registry.register(vm, now_us()).map_err(|e| match e {
            AttachError::Full(_) => Status::resource_exhausted(e.to_string()),
            _ => Status::already_exists(e.to_string()),
        })?;
        info!(vm_id = %vm.vm_id, name = %vm.name, image_id = %vm.image_id, "VM registered");
        // Registration never waits on the manager: the event rides the
        // next heartbeat.
        let mut ev = app.reporter.new_event(MgrEventKind::VmRegistered);
        ev.vm_id = vm.vm_id.clone();
        ev.vm_name = vm.name.clone();
        app.reporter.report(ev).await;
        Ok(Response::new(RegisterResponse {
            session_id,
            policy: Some(app.policies.for_group(&vm.group).to_wire()),
            database_version: app.signatures.version(),
            appliance_id: app.reporter.appliance_id().to_string(),
        }))
    }

    type SessionStream = Pin<Box<dyn Stream<Item = Result<ApplianceMessage, Status>> + Send>>;

    async fn session(
        &self,
        request: Request<Streaming<GuestMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let certified = certified_vm(&self.0, &request)?;
        let rx = crate::session::open(self.0.clone(), certified, request.into_inner()).await?;
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn enroll(
        &self,
        request: Request<giva_proto::shim::EnrollRequest>,
    ) -> Result<Response<giva_proto::shim::EnrollResponse>, Status> {
        let caller = request
            .remote_addr()
            .map_or_else(|| "a local socket".to_string(), |a| a.to_string());
        let req = request.into_inner();
        if req.token.len() > 256 || req.csr_pem.len() > 16 * 1024 {
            return Err(Status::invalid_argument(
                "an enrollment token is at most 256 bytes and a request 16 KiB",
            ));
        }
        if giva_runtime::clone_token::is_clone_token(&req.token) {
            return self.enroll_clone(&req.token, &req.csr_pem, &caller);
        }
        match self.0.reporter.enroll_vm(req.token, req.csr_pem).await {
            Ok(answer) if answer.role == "vm" => {
                tracing::info!(vm_id = %answer.name, %caller, "VM enrolled");
                Ok(Response::new(giva_proto::shim::EnrollResponse {
                    cert_pem: answer.cert_pem,
                    ca_pem: answer.ca_pem,
                    crl_pem: answer.crl_pem,
                    vm_id: answer.name,
                }))
            }
            Ok(answer) => {
                // The manager checks the role; this is the second lock.
                tracing::error!(role = %answer.role, %caller, "the manager answered a VM's enrollment with another role; withheld");
                Err(Status::permission_denied("not a VM's enrollment"))
            }
            Err(status) => {
                tracing::warn!(%caller, error = %status.message(), "VM enrollment refused");
                Err(status)
            }
        }
    }

    async fn scan(&self, request: Request<ScanRequest>) -> Result<Response<ScanResponse>, Status> {
        // The caller is who the connection says, not who the request
        // claims: a claimed VM id would let anyone quarantine any VM.
        let caller = request
            .remote_addr()
            .map_or_else(|| "a local socket".to_string(), |a| a.to_string());
        let req = request.into_inner();
        check_field("vm_id", &req.vm_id)?;
        check_field("name", &req.name)?;
        let app = self.0.clone();
        let loaded = app.signatures.current();
        let policy = app.policies.default_policy();
        let started = std::time::Instant::now();
        let data: std::sync::Arc<[u8]> = req.data.into();
        let opts = giva_content::typed_options(&scan_options(policy.limits()), &data);
        let size = data.len() as u64;
        if policy.limits().max_file_size != 0 && size > policy.limits().max_file_size {
            return Err(Status::resource_exhausted(format!(
                "buffer of {size} bytes is larger than the {} byte limit",
                policy.limits().max_file_size
            )));
        }
        // The content digest keys the cache: the same bytes are scanned once
        // per database generation.
        let digest: [u8; 32] = Sha256::digest(&data).into();
        let key = content_key(&digest);
        // The pool's fairness key: per caller, so that a claim cannot queue
        // behind (or ahead of) another VM's work.
        let vm = format!("unary:{caller}");
        let (result, from_cache, member) = match app.cache.get(&key, loaded.epoch) {
            Some(cached) => {
                app.stats.cache_hits.inc();
                match cached {
                    CachedVerdict::Clean => (
                        ScanResult {
                            detections: Vec::new(),
                            outcome: Outcome::Clean,
                            bytes_scanned: 0,
                            allowed: false,
                        },
                        true,
                        Vec::new(),
                    ),
                    CachedVerdict::Infected(i) => (
                        ScanResult {
                            detections: i.detections.clone(),
                            outcome: Outcome::Infected,
                            bytes_scanned: 0,
                            allowed: false,
                        },
                        true,
                        i.member.clone(),
                    ),
                }
            }
            None => {
                app.stats.cache_misses.inc();
                app.stats.bytes_scanned.inc_by(size);
                let job = app
                    .pool
                    .scan_bytes(&loaded.engine, data.clone(), &opts, &vm, Priority::OnDemand)
                    .map_err(|busy| Status::resource_exhausted(format!("{busy}; try again")))?;
                let result = job
                    .await
                    .map_err(|e| Status::internal(format!("scan failed: {e:?}")))?;
                // Then its layers, as a session's file: a buffer that is a
                // container is opened under the policy's limits.
                let decomposer = giva_content::Decomposer::new(
                    loaded.engine.clone(),
                    opts.clone(),
                    content_limits(policy.limits(), app.spool.clone()),
                )
                .with_cache(app.cache.clone(), loaded.epoch);
                let name = crate::layers::base_name(&req.name).to_string();
                let layers = app
                    .pool
                    .submit(&vm, Priority::OnDemand, move || {
                        decomposer.scan_inside(&data, &name, result, started)
                    })
                    .map_err(|busy| Status::resource_exhausted(format!("{busy}; try again")))?
                    .await
                    .map_err(|e| Status::internal(format!("scan failed: {e:?}")))?;
                app.stats.content_members.inc_by(layers.members);
                app.stats.content_members_cached.inc_by(layers.cached);
                // The cache keeps the result as scanned; this policy may
                // answer a limit as an alert.
                if let Some(c) = crate::scan::cacheable(
                    &layers.result,
                    layers
                        .found
                        .first()
                        .map(|f| f.path.clone())
                        .unwrap_or_default(),
                ) {
                    app.cache.insert(key, loaded.epoch, c);
                }
                let layers = policy.alerts(layers);
                let member = layers
                    .found
                    .first()
                    .map(|f| f.path.clone())
                    .unwrap_or_default();
                (layers.result, false, member)
            }
        };
        let mut verdict = verdict_for(
            0,
            &result,
            policy.deny_on_detection(),
            loaded.database.version(),
        );
        verdict.from_cache = from_cache;
        if verdict.kind == VerdictKind::Deny as i32 {
            let mut ev = app.reporter.new_event(MgrEventKind::Detection);
            // Not attributed to a VM: the manager records the detection
            // and quarantines nobody on an unverified claim.
            ev.detail = if req.vm_id.is_empty() {
                format!("unary Scan from {caller}")
            } else {
                format!(
                    "unary Scan from {caller}, which claimed to be VM {} (not verified)",
                    req.vm_id
                )
            };
            if !member.is_empty() {
                ev.member =
                    giva_content::Report::joined(crate::layers::base_name(&req.name), &member);
            }
            ev.path = req.name;
            ev.signatures = verdict
                .detections
                .iter()
                .map(|d| d.signature.clone())
                .collect();
            ev.action = giva_proto::manager::Action::Reported as i32;
            ev.database_version = loaded.database.version().to_string();
            app.reporter.report(ev).await;
        }
        Ok(Response::new(ScanResponse {
            verdict: Some(verdict),
        }))
    }
}
