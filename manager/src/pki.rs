//! The manager's public-key infrastructure, kept in its store: the CA's
//! generations, the certificates they issued, revocation, rotation, and
//! the one-time tokens that appliances enroll with.
//!
//! - **Generations.** The first CA is generation 1. `rotate` adds a new
//!   one, which signs from then on; the old stays trusted (it is in the
//!   trust bundle, `ca.pem`) until it is `retire`d, so that certificates
//!   can be renewed one host at a time with no downtime.
//! - **Revocation.** A revoked certificate is marked in the store, where the
//!   manager checks every appliance call, and is listed in its generation's
//!   revocation list (`crl.pem`), which appliances load (and reload on
//!   SIGHUP) to refuse shims.
//! - **Enrollment.** `token` makes a one-time token for a role and a name,
//!   valid for a while; only its SHA-256 is kept. A holder sends it with a
//!   certificate signing request to the `Enroll` call, and gets back a
//!   certificate for that role and name, and the trust bundle. The key
//!   never leaves the holder.

use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::ca::{Ca, CaError, Issued, Role, write_file};
use crate::store::{CertificateRecord, Store, StoreError, TokenUse};

/// Why the PKI cannot do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A certificate or key could not be made.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// There is no CA yet.
    #[error("the manager has no CA yet: make one with `giva-manager ca init`")]
    NoCa,
    /// An operation that is not allowed.
    #[error("{0}")]
    Refused(String),
}

impl From<sqlx::Error> for PkiError {
    fn from(e: sqlx::Error) -> Self {
        PkiError::Store(e.into())
    }
}

/// The role under which delegated CAs are recorded.
pub const DELEGATE_ROLE: &str = "delegate";

/// What an enrollment gives.
#[derive(Debug, Clone)]
pub struct Enrollment {
    /// The certificate (no key: it stays with the holder).
    pub cert: Issued,
    /// The CAs to trust.
    pub ca_pem: String,
    /// The role it is for.
    pub role: Role,
    /// The name it gives.
    pub name: String,
    /// An appliance's delegated CA, when it asked for one.
    pub delegate: Option<Issued>,
    /// The clone key (hex), with the delegated CA.
    pub clone_key: Option<String>,
}

/// The manager's PKI over its store.
#[derive(Debug, Clone)]
pub struct Pki {
    store: Store,
}

/// The SHA-256 (hex) under which a token is kept.
pub fn token_digest(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// The prefix of enrollment tokens, so that one is recognised in a log or
/// a paste.
pub const TOKEN_PREFIX: &str = "giva-enroll-";

impl Pki {
    /// The PKI kept in `store`.
    pub fn new(store: Store) -> Self {
        Pki { store }
    }

    /// The store it is kept in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Makes the CA if there is none: the one in `adopt` (a directory with
    /// `ca.pem` and `ca.key`, as an earlier release made with `ca init`)
    /// when there is one, else a new one. Returns the newest generation and
    /// whether it was made now.
    ///
    /// # Errors
    ///
    /// [`PkiError`]: the store fails, or the CA cannot be made or read.
    pub async fn init(&self, adopt: Option<&Path>) -> Result<(i64, bool), PkiError> {
        if let Some(g) = self.store.ca_generations().await?.last() {
            return Ok((g.generation, false));
        }
        let (cert_pem, key_pem) = match adopt.filter(|d| d.join("ca.key").exists()) {
            Some(dir) => {
                let ca = Ca::load(dir)?;
                let key_path = dir.join("ca.key");
                let key_pem = std::fs::read_to_string(&key_path).map_err(|source| CaError::Io {
                    path: key_path,
                    source,
                })?;
                tracing::info!(dir = %dir.display(), "adopting the CA kept in files");
                (ca.cert_pem().to_string(), key_pem)
            }
            None => {
                let made = Ca::generate()?;
                (made.cert_pem, made.key_pem)
            }
        };
        let generation = self
            .store
            .add_ca_generation(&cert_pem, &key_pem, giva_proto::now_us())
            .await?;
        Ok((generation, true))
    }

    /// The newest trusted generation, which signs.
    async fn signer(&self) -> Result<(i64, Ca), PkiError> {
        let gens = self.store.ca_generations().await?;
        let g = gens
            .iter()
            .rev()
            .find(|g| g.retired_at_us == 0)
            .ok_or(PkiError::NoCa)?;
        Ok((g.generation, Ca::from_pem(&g.cert_pem, &g.key_pem)?))
    }

    /// The certificates of every trusted generation, newest first: what
    /// peers trust (`ca.pem`).
    ///
    /// # Errors
    ///
    /// [`PkiError`]: the store fails, or there is no CA.
    pub async fn trust_bundle(&self) -> Result<String, PkiError> {
        let gens = self.store.ca_generations().await?;
        let bundle: String = gens
            .iter()
            .rev()
            .filter(|g| g.retired_at_us == 0)
            .map(|g| g.cert_pem.clone())
            .collect();
        if bundle.is_empty() {
            return Err(PkiError::NoCa);
        }
        Ok(bundle)
    }

    /// The revocation lists of every trusted generation (`crl.pem`).
    ///
    /// # Errors
    ///
    /// [`PkiError`]: the store fails, or a list cannot be signed.
    pub async fn revocation_lists(&self) -> Result<String, PkiError> {
        let mut out = String::new();
        for g in self.store.ca_generations().await? {
            if g.retired_at_us != 0 {
                continue;
            }
            let revoked: Vec<(String, i64)> = self
                .store
                .revoked_certificates(g.generation)
                .await?
                .into_iter()
                .map(|c| (c.serial, c.revoked_at_us))
                .collect();
            let number = self.store.next_crl_number(g.generation).await?;
            let ca = Ca::from_pem(&g.cert_pem, &g.key_pem)?;
            out.push_str(&ca.revocation_list(&revoked, u64::try_from(number).unwrap_or(0))?);
        }
        Ok(out)
    }

    /// A version of what the revocation lists say (the trusted generations
    /// and every revoked serial): it changes when they do. `None` when
    /// there is no CA.
    ///
    /// # Errors
    ///
    /// [`PkiError`]: the store fails.
    pub async fn revocation_version(&self) -> Result<Option<String>, PkiError> {
        let gens = self.store.ca_generations().await?;
        if gens.is_empty() {
            return Ok(None);
        }
        let mut h = sha2::Sha256::new();
        for g in gens.iter().filter(|g| g.retired_at_us == 0) {
            h.update(g.generation.to_le_bytes());
            for c in self.store.revoked_certificates(g.generation).await? {
                h.update(c.serial.as_bytes());
                h.update(b"\n");
            }
        }
        Ok(Some(hex::encode(&h.finalize()[..12])))
    }

    /// Writes the trust bundle (`ca.pem`) and the revocation lists
    /// (`crl.pem`) into `dir`; returns their paths.
    ///
    /// # Errors
    ///
    /// [`PkiError`]: as for [`Pki::trust_bundle`], or a file cannot be
    /// written.
    pub async fn export(&self, dir: &Path) -> Result<(PathBuf, PathBuf), PkiError> {
        let ca = dir.join("ca.pem");
        let crl = dir.join("crl.pem");
        write_file(&ca, &self.trust_bundle().await?, false)?;
        write_file(&crl, &self.revocation_lists().await?, false)?;
        Ok((ca, crl))
    }

    async fn record(
        &self,
        generation: i64,
        issued: &Issued,
        role: Role,
        name: &str,
        issued_to: &str,
    ) -> Result<CertificateRecord, PkiError> {
        let record = CertificateRecord {
            serial: issued.serial.clone(),
            generation,
            role: role.as_str().to_string(),
            name: name.to_string(),
            issued_at_us: giva_proto::now_us(),
            not_after_us: issued.not_after_us,
            issued_to: issued_to.to_string(),
            revoked_at_us: 0,
            revoke_reason: String::new(),
        };
        self.store.record_certificate(&record).await?;
        Ok(record)
    }

    /// Issues a certificate and its key (see [`Ca::issue`]) from the
    /// signing generation, and records it as issued to `issued_to`.
    ///
    /// # Errors
    ///
    /// [`PkiError`]: no CA, a bad name, or the store fails.
    pub async fn issue(
        &self,
        name: &str,
        role: Role,
        dns: &[String],
        ips: &[std::net::IpAddr],
        days: u32,
        issued_to: &str,
    ) -> Result<Issued, PkiError> {
        let (generation, ca) = self.signer().await?;
        let issued = ca.issue(name, role, dns, ips, days)?;
        self.record(generation, &issued, role, name, issued_to)
            .await?;
        Ok(issued)
    }

    /// Makes a one-time enrollment token for `name` in `role`, valid for
    /// `ttl`. Only its digest is kept: the token is shown once.
    ///
    /// # Errors
    ///
    /// [`PkiError`]: no randomness, or the store fails.
    pub async fn make_token(
        &self,
        role: Role,
        name: &str,
        dns: &[String],
        ips: &[std::net::IpAddr],
        ttl: std::time::Duration,
    ) -> Result<String, PkiError> {
        if role == Role::Server {
            return Err(PkiError::Refused(
                "servers are not enrolled: issue their certificate with `ca issue --role server`"
                    .into(),
            ));
        }
        validate_name(name)?;
        for d in dns {
            validate_name(d)?;
        }
        let hosts: Vec<String> = dns
            .iter()
            .cloned()
            .chain(ips.iter().map(ToString::to_string))
            .collect();
        let random = giva_runtime::token::random_hex(24).map_err(|source| CaError::Io {
            path: PathBuf::from("/dev/urandom"),
            source,
        })?;
        let token = format!("{TOKEN_PREFIX}{random}");
        let now = giva_proto::now_us();
        let ttl_us = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
        self.store
            .add_enrollment_token(
                &token_digest(&token),
                role.as_str(),
                name,
                &hosts.join(" "),
                now,
                now.saturating_add(ttl_us),
            )
            .await?;
        Ok(token)
    }

    /// Enrolls the holder of `token`: checks it (unknown, used or expired
    /// tokens are refused, as is one for another `role` than asked, and a
    /// token is used once), signs the request's key for the token's role
    /// and name, and returns the certificate and the trust bundle; for an
    /// appliance that sends `delegate_csr_pem`, its delegated CA and the
    /// clone key too.
    ///
    /// # Errors
    ///
    /// [`PkiError::Refused`] with why (a delegated CA is refused for a VM),
    /// or a store or CA failure.
    pub async fn enroll(
        &self,
        token: &str,
        csr_pem: &str,
        delegate_csr_pem: Option<&str>,
        role: Option<Role>,
        days: u32,
    ) -> Result<Enrollment, PkiError> {
        // Cheap refusals first: a flood of made-up tokens costs one read
        // each, no key and no write lock.
        let digest = token_digest(token);
        let asked = role.map(Role::as_str);
        let now = giva_proto::now_us();
        refuse_unless_granted(
            self.store
                .peek_enrollment_token(&digest, asked, now)
                .await?,
        )?;
        // The requests must be sound before the token is spent on them.
        for csr in std::iter::once(csr_pem).chain(delegate_csr_pem) {
            rcgen::CertificateSigningRequestParams::from_pem(csr).map_err(|e| {
                PkiError::Refused(format!("a certificate signing request is not valid: {e}"))
            })?;
        }
        let (generation, ca) = self.signer().await?;
        // Spent once: a second caller with the same token, between the
        // read above and now, finds it used.
        let (role, name, hosts) =
            refuse_unless_granted(self.store.use_enrollment_token(&digest, asked, now).await?)?;
        let role = match role.as_str() {
            "appliance" => Role::Appliance,
            "vm" => Role::Vm,
            other => return Err(PkiError::Refused(format!("no enrollment as {other}"))),
        };
        let mut dns = Vec::new();
        let mut ips = Vec::new();
        for h in hosts.split_whitespace() {
            match h.parse::<std::net::IpAddr>() {
                Ok(ip) => ips.push(ip),
                Err(_) => dns.push(h.to_string()),
            }
        }
        if delegate_csr_pem.is_some() && role != Role::Appliance {
            return Err(PkiError::Refused(
                "only an appliance gets a delegated CA".into(),
            ));
        }
        let issued = ca.sign_request(csr_pem, &name, role, &dns, &ips, days)?;
        let to = format!("token {}", &digest[..16]);
        self.record(generation, &issued, role, &name, &to).await?;
        self.store
            .note_token_certificate(&digest, &issued.serial)
            .await?;
        let (delegate, clone_key) = match delegate_csr_pem {
            Some(csr) => {
                let d = ca.sign_delegate(&name, Some(csr), days)?;
                self.record_delegate(generation, &d, &name, &to).await?;
                (Some(d), Some(self.clone_key().await?))
            }
            None => (None, None),
        };
        Ok(Enrollment {
            cert: issued,
            ca_pem: self.trust_bundle().await?,
            role,
            name,
            delegate,
            clone_key,
        })
    }

    /// The generation that signs now.
    async fn signing_generation(&self) -> Result<i64, PkiError> {
        let gens = self.store.ca_generations().await?;
        gens.iter()
            .rev()
            .find(|g| g.retired_at_us == 0)
            .map(|g| g.generation)
            .ok_or(PkiError::NoCa)
    }

    /// Whether `record` is due for renewal: a newer generation than its own
    /// signs now, or less than a third of its lifetime is left.
    async fn due(&self, record: &CertificateRecord) -> Result<bool, PkiError> {
        if record.generation < self.signing_generation().await? {
            return Ok(true);
        }
        let life = record.not_after_us - record.issued_at_us;
        Ok(giva_proto::now_us() >= record.not_after_us - life / 3)
    }

    /// Whether the appliance certificate `der` is due for renewal (see
    /// [`Pki::renew`]); false for one the store does not know, or revoked.
    ///
    /// # Errors
    ///
    /// [`PkiError`]: the store fails.
    pub async fn renewal_due(&self, der: &[u8]) -> Result<bool, PkiError> {
        let Some(serial) = serial_of(der) else {
            return Ok(false);
        };
        match self.store.certificate(&serial).await? {
            Some(r) if r.revoked_at_us == 0 && r.role == Role::Appliance.as_str() => {
                self.due(&r).await
            }
            _ => Ok(false),
        }
    }

    /// Renews an appliance's certificate: `current` is the certificate it
    /// called with (the TLS layer checked it chains to this CA); the new one
    /// names the same appliance and hosts, from the generation that signs
    /// now, for the key of `csr_pem`. With `delegate_csr_pem`, its
    /// delegated CA is renewed too. Granted only when renewal is due, so a
    /// holder cannot mint certificates at will; the current certificate is
    /// revoked as superseded when the new one is first used
    /// ([`Pki::admit`]).
    ///
    /// # Errors
    ///
    /// [`PkiError::Refused`]: not an appliance certificate this CA
    /// recorded, revoked, not due, or an unsound request.
    pub async fn renew(
        &self,
        current: &[u8],
        csr_pem: &str,
        delegate_csr_pem: Option<&str>,
        days: u32,
    ) -> Result<Enrollment, PkiError> {
        let refused = |why: &str| PkiError::Refused(why.to_string());
        let serial = serial_of(current).ok_or_else(|| refused("the certificate cannot be read"))?;
        let record = self.store.certificate(&serial).await?.ok_or_else(|| {
            refused("the manager has no record of this certificate: enroll with a token")
        })?;
        if record.revoked_at_us != 0 {
            return Err(refused("this certificate was revoked"));
        }
        if record.role != Role::Appliance.as_str() {
            return Err(refused(
                "only an appliance's certificate is renewed this way",
            ));
        }
        if !self.due(&record).await? {
            return Err(PkiError::Refused(format!(
                "not due for renewal: the certificate is from the signing CA and a third of its lifetime is left (expires {})",
                crate::time::format_us(record.not_after_us)
            )));
        }
        for csr in std::iter::once(csr_pem).chain(delegate_csr_pem) {
            rcgen::CertificateSigningRequestParams::from_pem(csr).map_err(|e| {
                PkiError::Refused(format!("a certificate signing request is not valid: {e}"))
            })?;
        }
        // The same hosts; its own name the signing adds again.
        let (mut dns, ips) = hosts_of(current);
        dns.retain(|d| *d != record.name);
        let (generation, ca) = self.signer().await?;
        let issued = ca.sign_request(csr_pem, &record.name, Role::Appliance, &dns, &ips, days)?;
        let to = format!("{RENEWAL_OF}{serial}");
        self.record(generation, &issued, Role::Appliance, &record.name, &to)
            .await?;
        let (delegate, clone_key) = match delegate_csr_pem {
            Some(csr) => {
                let d = ca.sign_delegate(&record.name, Some(csr), days)?;
                self.record_delegate(generation, &d, &record.name, &to)
                    .await?;
                (Some(d), Some(self.clone_key().await?))
            }
            None => (None, None),
        };
        Ok(Enrollment {
            cert: issued,
            ca_pem: self.trust_bundle().await?,
            role: Role::Appliance,
            name: record.name,
            delegate,
            clone_key,
        })
    }

    /// Whether an appliance's certificate `der` may call: false when it was
    /// revoked. A renewed certificate's first use revokes the one it
    /// replaced, as superseded, so that the old key stops working.
    ///
    /// # Errors
    ///
    /// [`PkiError`]: the store fails.
    pub async fn admit(&self, der: &[u8]) -> Result<bool, PkiError> {
        let Some(serial) = serial_of(der) else {
            return Ok(true);
        };
        let Some(record) = self.store.certificate(&serial).await? else {
            return Ok(true);
        };
        if record.revoked_at_us != 0 {
            return Ok(false);
        }
        if let Some(old) = record.issued_to.strip_prefix(RENEWAL_OF)
            && record.role == Role::Appliance.as_str()
        {
            let superseded = self
                .store
                .revoke_certificates(Some(old), None, "superseded", giva_proto::now_us())
                .await?;
            if !superseded.is_empty() {
                tracing::info!(appliance = %record.name, old, new = %serial, "renewed certificate in use; the one it replaced is revoked as superseded");
            }
        }
        Ok(true)
    }

    async fn record_delegate(
        &self,
        generation: i64,
        issued: &Issued,
        appliance: &str,
        issued_to: &str,
    ) -> Result<(), PkiError> {
        self.store
            .record_certificate(&CertificateRecord {
                serial: issued.serial.clone(),
                generation,
                role: DELEGATE_ROLE.to_string(),
                name: appliance.to_string(),
                issued_at_us: giva_proto::now_us(),
                not_after_us: issued.not_after_us,
                issued_to: issued_to.to_string(),
                revoked_at_us: 0,
                revoke_reason: String::new(),
            })
            .await?;
        Ok(())
    }

    /// Signs a delegated CA, with a new key, for `appliance` (for an
    /// appliance whose certificate an operator issues by hand).
    ///
    /// # Errors
    ///
    /// [`PkiError`]: no CA, or the store fails.
    pub async fn issue_delegate(&self, appliance: &str, days: u32) -> Result<Issued, PkiError> {
        let (generation, ca) = self.signer().await?;
        let d = ca.sign_delegate(appliance, None, days)?;
        self.record_delegate(generation, &d, appliance, "operator")
            .await?;
        Ok(d)
    }

    /// The clone key (hex), made at first use: clone tokens are signed
    /// with it, and appliances check them with it.
    ///
    /// # Errors
    ///
    /// [`PkiError`]: the store fails, or there is no randomness.
    pub async fn clone_key(&self) -> Result<String, PkiError> {
        let fresh = giva_runtime::token::random_hex(32).map_err(|source| CaError::Io {
            path: PathBuf::from("/dev/urandom"),
            source,
        })?;
        Ok(self.store.pki_secret("clone_key", move || fresh).await?)
    }

    /// Replaces the clone key: tokens signed with the old one stop working
    /// at every appliance that loads the new one (SIGHUP). Returns it.
    ///
    /// # Errors
    ///
    /// [`PkiError`]: the store fails, or there is no randomness.
    pub async fn rotate_clone_key(&self) -> Result<String, PkiError> {
        let fresh = giva_runtime::token::random_hex(32).map_err(|source| CaError::Io {
            path: PathBuf::from("/dev/urandom"),
            source,
        })?;
        self.store.set_pki_secret("clone_key", &fresh).await?;
        Ok(fresh)
    }

    /// A clone token for `vm_id`, valid for `ttl` (a day at most).
    ///
    /// # Errors
    ///
    /// [`PkiError`]: a bad VM id, or the store fails.
    pub async fn clone_token(
        &self,
        vm_id: &str,
        ttl: std::time::Duration,
    ) -> Result<String, PkiError> {
        if ttl.as_secs() > giva_runtime::clone_token::MAX_TTL_SECS {
            return Err(PkiError::Refused(
                "a clone token is valid for a day at most".into(),
            ));
        }
        let key = hex::decode(self.clone_key().await?)
            .map_err(|_| PkiError::Refused("the stored clone key is not hex".into()))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        giva_runtime::clone_token::mint(&key, vm_id, (now + ttl).as_secs())
            .map_err(|e| PkiError::Refused(e.to_string()))
    }

    /// Starts a rotation: a new generation signs from now on; the others
    /// stay trusted until retired. Returns the new generation.
    ///
    /// # Errors
    ///
    /// [`PkiError`]: no CA yet, or the store fails.
    pub async fn rotate(&self) -> Result<i64, PkiError> {
        self.signer().await?;
        let made = Ca::generate()?;
        Ok(self
            .store
            .add_ca_generation(&made.cert_pem, &made.key_pem, giva_proto::now_us())
            .await?)
    }

    /// Ends a rotation: `generation` is no longer trusted. The newest
    /// generation, which signs, cannot be retired.
    ///
    /// # Errors
    ///
    /// [`PkiError::Refused`] for the signing or an unknown generation.
    pub async fn retire(&self, generation: i64) -> Result<(), PkiError> {
        let (signing, _) = self.signer().await?;
        if generation == signing {
            return Err(PkiError::Refused(format!(
                "generation {generation} signs new certificates: rotate first"
            )));
        }
        if !self
            .store
            .retire_ca_generation(generation, giva_proto::now_us())
            .await?
        {
            return Err(PkiError::Refused(format!(
                "no trusted CA generation {generation}"
            )));
        }
        Ok(())
    }

    /// Revokes a certificate by serial number, or every certificate of a
    /// role and name (an appliance's delegated CAs with it). Returns those
    /// revoked now.
    ///
    /// # Errors
    ///
    /// [`PkiError`]: the store fails.
    pub async fn revoke(
        &self,
        serial: Option<&str>,
        role_name: Option<(Role, &str)>,
        reason: &str,
    ) -> Result<Vec<CertificateRecord>, PkiError> {
        let now = giva_proto::now_us();
        let mut revoked = self
            .store
            .revoke_certificates(serial, role_name.map(|(r, n)| (r.as_str(), n)), reason, now)
            .await?;
        // A serial the store never recorded (a certificate the CA signed
        // while it was kept in files, by an earlier release) is recorded
        // revoked, under the first generation, which is that CA.
        if let Some(serial) = serial.filter(|_| revoked.is_empty())
            && hex::decode(serial).is_ok()
            && !self
                .store
                .certificates()
                .await?
                .iter()
                .any(|c| c.serial.eq_ignore_ascii_case(serial))
        {
            let record = CertificateRecord {
                serial: serial.to_ascii_lowercase(),
                generation: 1,
                role: "unrecorded".into(),
                name: String::new(),
                issued_at_us: 0,
                not_after_us: 0,
                issued_to: "signed before the CA was kept in the store".into(),
                revoked_at_us: 0,
                revoke_reason: String::new(),
            };
            self.store.record_certificate(&record).await?;
            revoked = self
                .store
                .revoke_certificates(Some(serial), None, reason, now)
                .await?;
        }
        // An appliance revoked by name loses its delegated CA too, and with
        // it every clone certificate the CA signed.
        if let Some((Role::Appliance, name)) = role_name {
            revoked.extend(
                self.store
                    .revoke_certificates(None, Some((DELEGATE_ROLE, name)), reason, now)
                    .await?,
            );
        }
        Ok(revoked)
    }

    /// True when the certificate (DER) was revoked in this store.
    ///
    /// # Errors
    ///
    /// [`PkiError`]: the store fails.
    pub async fn is_revoked(&self, der: &[u8]) -> Result<bool, PkiError> {
        let Some(serial) = serial_of(der) else {
            return Ok(false);
        };
        Ok(self.store.is_revoked(&serial).await?)
    }
}

/// The grant of a token, or why it is refused.
fn refuse_unless_granted(used: TokenUse) -> Result<(String, String, String), PkiError> {
    match used {
        TokenUse::Granted { role, name, hosts } => Ok((role, name, hosts)),
        TokenUse::Unknown => Err(PkiError::Refused("unknown enrollment token".into())),
        TokenUse::Used => Err(PkiError::Refused(
            "the enrollment token was used already".into(),
        )),
        TokenUse::Expired => Err(PkiError::Refused("the enrollment token has expired".into())),
        TokenUse::OtherRole(its) => Err(PkiError::Refused(format!(
            "the enrollment token is for a{} {its}, not this",
            if its.starts_with('a') { "n" } else { "" }
        ))),
    }
}

/// How a renewed certificate's record names the one it replaced.
const RENEWAL_OF: &str = "renewal of ";

/// The DNS names and IP addresses a DER certificate is for.
fn hosts_of(der: &[u8]) -> (Vec<String>, Vec<std::net::IpAddr>) {
    use x509_parser::extensions::GeneralName;
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return (dns, ips);
    };
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => dns.push((*d).to_string()),
                GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*b) {
                        ips.push(std::net::IpAddr::from(a));
                    } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                        ips.push(std::net::IpAddr::from(a));
                    }
                }
                _ => {}
            }
        }
    }
    (dns, ips)
}

/// The serial number (lower-case hex, as recorded) of a DER certificate.
pub fn serial_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(hex::encode(cert.raw_serial()))
}

/// A name for a certificate: what an appliance or VM id may be.
fn validate_name(name: &str) -> Result<(), PkiError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(PkiError::Refused(format!(
            "'{name}' is not a name a certificate can carry: 1 to 128 letters, digits, '-', '_', '.' or '@'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_ca_kept_in_files_is_adopted_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let made = Ca::generate().unwrap();
        write_file(&dir.path().join("ca.key"), &made.key_pem, true).unwrap();
        write_file(&dir.path().join("ca.pem"), &made.cert_pem, false).unwrap();
        let pki = Pki::new(Store::open(Path::new(":memory:")).await.unwrap());
        assert_eq!(pki.init(Some(dir.path())).await.unwrap(), (1, true));
        assert_eq!(pki.trust_bundle().await.unwrap(), made.cert_pem);
        // A second init keeps it.
        assert_eq!(pki.init(Some(dir.path())).await.unwrap(), (1, false));
        assert_eq!(pki.trust_bundle().await.unwrap(), made.cert_pem);
    }

    fn der(pem: &str) -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .unwrap()
            .1
            .contents
    }

    /// Renewal is for a recorded, unrevoked appliance certificate that is
    /// due; it keeps the name and hosts, and the new certificate's first
    /// use revokes the old one.
    #[tokio::test]
    async fn renewal_only_when_due_and_the_new_certificate_supersedes_the_old() {
        let pki = Pki::new(Store::open(Path::new(":memory:")).await.unwrap());
        pki.init(None).await.unwrap();
        let ip: std::net::IpAddr = "192.0.2.7".parse().unwrap();
        let old = pki
            .issue(
                "app-1",
                Role::Appliance,
                &["app-1.example".into()],
                &[ip],
                365,
                "test",
            )
            .await
            .unwrap();
        let old_der = der(&old.cert_pem);
        let (_, csr) = giva_proto::enroll::key_request().unwrap();
        let not_due = pki.renew(&old_der, &csr, None, 365).await.unwrap_err();
        assert!(not_due.to_string().contains("not due"), "{not_due}");
        assert!(!pki.renewal_due(&old_der).await.unwrap());

        // A VM's certificate, or one the store never recorded, is not
        // renewed here.
        let vm = pki
            .issue("vm-1", Role::Vm, &[], &[], 1, "test")
            .await
            .unwrap();
        let e = pki
            .renew(&der(&vm.cert_pem), &csr, None, 1)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("only an appliance"), "{e}");
        let stranger = Ca::generate().unwrap();
        let e = pki
            .renew(&der(&stranger.cert_pem), &csr, None, 1)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no record"), "{e}");

        // A rotation makes every certificate of the old generation due.
        pki.rotate().await.unwrap();
        assert!(pki.renewal_due(&old_der).await.unwrap());
        let e = pki
            .renew(&old_der, "not a request", None, 365)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not valid"), "{e}");
        let (_, dcsr) = giva_proto::enroll::key_request().unwrap();
        let renewed = pki.renew(&old_der, &csr, Some(&dcsr), 365).await.unwrap();
        assert_eq!(
            (renewed.role, renewed.name.as_str()),
            (Role::Appliance, "app-1")
        );
        assert!(renewed.delegate.is_some() && renewed.clone_key.is_some());
        let new_der = der(&renewed.cert.cert_pem);
        assert_eq!(hosts_of(&new_der), hosts_of(&old_der));
        assert_eq!(
            hosts_of(&new_der),
            (
                vec!["app-1".to_string(), "app-1.example".to_string()],
                vec![ip]
            )
        );
        let record = pki
            .store
            .certificate(&renewed.cert.serial)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.generation, 2);
        assert!(!pki.renewal_due(&new_der).await.unwrap());

        // The old one works until the new one is first used.
        assert!(pki.admit(&old_der).await.unwrap());
        assert!(pki.admit(&new_der).await.unwrap());
        assert!(!pki.admit(&old_der).await.unwrap());
        let e = pki.renew(&old_der, &csr, None, 365).await.unwrap_err();
        assert!(e.to_string().contains("revoked"), "{e}");
    }
}
