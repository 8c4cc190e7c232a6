//! The CA's generations, the certificates they issued, and enrollment
//! tokens (migration 0003). What they mean is in [`crate::pki`]; this is
//! how they are kept.

use sqlx::Row;

use super::{Store, StoreError};

/// One CA generation.
#[derive(Debug, Clone)]
pub struct CaGeneration {
    /// Its number (1 for the first CA; a rotation adds one).
    pub generation: i64,
    /// Its certificate.
    pub cert_pem: String,
    /// Its key.
    pub key_pem: String,
    /// When it was made.
    pub created_at_us: i64,
    /// When it stopped being trusted (0: trusted).
    pub retired_at_us: i64,
}

/// A certificate the CA issued.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertificateRecord {
    /// Its serial number (lower-case hex).
    pub serial: String,
    /// The generation that signed it.
    pub generation: i64,
    /// `appliance`, `vm`, `server` or `delegate`.
    pub role: String,
    /// The holder's name.
    pub name: String,
    /// When it was issued.
    pub issued_at_us: i64,
    /// When it expires.
    pub not_after_us: i64,
    /// Who asked for it.
    pub issued_to: String,
    /// When it was revoked (0: it was not).
    pub revoked_at_us: i64,
    /// Why.
    pub revoke_reason: String,
}

/// What became of an enrollment token that was presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenUse {
    /// Unused and in time: it is now used, for this role and name.
    Granted {
        /// The role it enrolls.
        role: String,
        /// The name it enrolls.
        name: String,
        /// Further DNS names and IP addresses (space-separated).
        hosts: String,
    },
    /// No such token.
    Unknown,
    /// Used before.
    Used,
    /// Past its time.
    Expired,
    /// For another role than the one asked for (not spent).
    OtherRole(String),
}

fn generation(row: &sqlx::sqlite::SqliteRow) -> CaGeneration {
    CaGeneration {
        generation: row.get("generation"),
        cert_pem: row.get("cert_pem"),
        key_pem: row.get("key_pem"),
        created_at_us: row.get("created_at_us"),
        retired_at_us: row.get("retired_at_us"),
    }
}

/// What a token's row allows for `role` at `now_us`.
fn token_use(row: Option<&sqlx::sqlite::SqliteRow>, role: Option<&str>, now_us: i64) -> TokenUse {
    let Some(row) = row else {
        return TokenUse::Unknown;
    };
    if row.get::<i64, _>("used_at_us") != 0 {
        return TokenUse::Used;
    }
    if row.get::<i64, _>("expires_at_us") <= now_us {
        return TokenUse::Expired;
    }
    let its_role: String = row.get("role");
    if role.is_some_and(|r| r != its_role) {
        return TokenUse::OtherRole(its_role);
    }
    TokenUse::Granted {
        role: its_role,
        name: row.get("name"),
        hosts: row.get("hosts"),
    }
}

fn certificate(row: &sqlx::sqlite::SqliteRow) -> CertificateRecord {
    CertificateRecord {
        serial: row.get("serial"),
        generation: row.get("generation"),
        role: row.get("role"),
        name: row.get("name"),
        issued_at_us: row.get("issued_at_us"),
        not_after_us: row.get("not_after_us"),
        issued_to: row.get("issued_to"),
        revoked_at_us: row.get("revoked_at_us"),
        revoke_reason: row.get("revoke_reason"),
    }
}

impl Store {
    /// Every CA generation, oldest first.
    pub async fn ca_generations(&self) -> Result<Vec<CaGeneration>, StoreError> {
        let rows = sqlx::query("SELECT * FROM ca_generations ORDER BY generation")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(generation).collect())
    }

    /// Adds a CA generation; returns its number.
    pub async fn add_ca_generation(
        &self,
        cert_pem: &str,
        key_pem: &str,
        now_us: i64,
    ) -> Result<i64, StoreError> {
        let mut tx = self.write_tx().await?;
        let next: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(generation), 0) + 1 FROM ca_generations")
                .fetch_one(&mut *tx)
                .await?;
        sqlx::query(
            "INSERT INTO ca_generations (generation, cert_pem, key_pem, created_at_us) VALUES (?, ?, ?, ?)",
        )
        .bind(next)
        .bind(cert_pem)
        .bind(key_pem)
        .bind(now_us)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(next)
    }

    /// Stops trusting a generation. Returns false when there is no such
    /// trusted generation.
    pub async fn retire_ca_generation(
        &self,
        generation: i64,
        now_us: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE ca_generations SET retired_at_us = ? WHERE generation = ? AND retired_at_us = 0",
        )
        .bind(now_us)
        .bind(generation)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The next revocation list number of a generation (counting it).
    pub async fn next_crl_number(&self, generation: i64) -> Result<i64, StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query("UPDATE ca_generations SET crl_number = crl_number + 1 WHERE generation = ?")
            .bind(generation)
            .execute(&mut *tx)
            .await?;
        let n: i64 =
            sqlx::query_scalar("SELECT crl_number FROM ca_generations WHERE generation = ?")
                .bind(generation)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Records an issued certificate.
    pub async fn record_certificate(&self, c: &CertificateRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO certificates (serial, generation, role, name, issued_at_us, not_after_us, issued_to)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&c.serial)
        .bind(c.generation)
        .bind(&c.role)
        .bind(&c.name)
        .bind(c.issued_at_us)
        .bind(c.not_after_us)
        .bind(&c.issued_to)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The certificates issued, newest first.
    pub async fn certificates(&self) -> Result<Vec<CertificateRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM certificates ORDER BY issued_at_us DESC, serial")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(certificate).collect())
    }

    /// The revoked certificates of generation `gen`.
    pub async fn revoked_certificates(
        &self,
        generation: i64,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM certificates WHERE generation = ? AND revoked_at_us != 0 ORDER BY serial",
        )
        .bind(generation)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(certificate).collect())
    }

    /// The record of the certificate with `serial`, if it was issued here.
    pub async fn certificate(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM certificates WHERE serial = ?")
            .bind(serial.to_ascii_lowercase())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(certificate))
    }

    /// True when the certificate with `serial` was revoked.
    pub async fn is_revoked(&self, serial: &str) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM certificates WHERE serial = ? AND revoked_at_us != 0",
        )
        .bind(serial)
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    /// Revokes the certificates that `what` names: a serial number, or
    /// every unrevoked certificate of `role` and name. Returns those it
    /// revoked now.
    pub async fn revoke_certificates(
        &self,
        serial: Option<&str>,
        role_name: Option<(&str, &str)>,
        reason: &str,
        now_us: i64,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let mut tx = self.write_tx().await?;
        let rows =
            match (serial, role_name) {
                (Some(s), _) => {
                    sqlx::query("SELECT * FROM certificates WHERE serial = ? AND revoked_at_us = 0")
                        .bind(s.to_ascii_lowercase())
                        .fetch_all(&mut *tx)
                        .await?
                }
                (None, Some((role, name))) => sqlx::query(
                    "SELECT * FROM certificates WHERE role = ? AND name = ? AND revoked_at_us = 0",
                )
                .bind(role)
                .bind(name)
                .fetch_all(&mut *tx)
                .await?,
                (None, None) => Vec::new(),
            };
        let revoked: Vec<_> = rows.iter().map(certificate).collect();
        for c in &revoked {
            sqlx::query(
                "UPDATE certificates SET revoked_at_us = ?, revoke_reason = ? WHERE serial = ?",
            )
            .bind(now_us)
            .bind(reason)
            .bind(&c.serial)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(revoked)
    }

    /// Keeps an enrollment token (by its digest) for `role` and `name`,
    /// valid until `expires_at_us`.
    pub async fn add_enrollment_token(
        &self,
        digest: &str,
        role: &str,
        name: &str,
        hosts: &str,
        now_us: i64,
        expires_at_us: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO enrollment_tokens (digest, role, name, hosts, created_at_us, expires_at_us)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(digest)
        .bind(role)
        .bind(name)
        .bind(hosts)
        .bind(now_us)
        .bind(expires_at_us)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// What using the enrollment token with `digest` for `role` would give,
    /// without using it (a read, no write lock).
    pub async fn peek_enrollment_token(
        &self,
        digest: &str,
        role: Option<&str>,
        now_us: i64,
    ) -> Result<TokenUse, StoreError> {
        let row = sqlx::query("SELECT * FROM enrollment_tokens WHERE digest = ?")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?;
        Ok(token_use(row.as_ref(), role, now_us))
    }

    /// Uses the enrollment token with `digest`, once: in one transaction
    /// it is checked, and marked used if it may be (the update itself
    /// requires it unused and in time, so two callers cannot both win).
    pub async fn use_enrollment_token(
        &self,
        digest: &str,
        role: Option<&str>,
        now_us: i64,
    ) -> Result<TokenUse, StoreError> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query("SELECT * FROM enrollment_tokens WHERE digest = ?")
            .bind(digest)
            .fetch_optional(&mut *tx)
            .await?;
        let used = token_use(row.as_ref(), role, now_us);
        if !matches!(used, TokenUse::Granted { .. }) {
            return Ok(used);
        }
        let done = sqlx::query(
            "UPDATE enrollment_tokens SET used_at_us = ?
             WHERE digest = ? AND used_at_us = 0 AND expires_at_us > ?",
        )
        .bind(now_us)
        .bind(digest)
        .bind(now_us)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(TokenUse::Used);
        }
        tx.commit().await?;
        Ok(used)
    }

    /// The PKI secret `name`, made with `make` (and kept) if there is none.
    pub async fn pki_secret(
        &self,
        name: &str,
        make: impl FnOnce() -> String,
    ) -> Result<String, StoreError> {
        let mut tx = self.write_tx().await?;
        let found: Option<String> =
            sqlx::query_scalar("SELECT value FROM pki_secrets WHERE name = ?")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(v) = found {
            return Ok(v);
        }
        let value = make();
        sqlx::query("INSERT INTO pki_secrets (name, value) VALUES (?, ?)")
            .bind(name)
            .bind(&value)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(value)
    }

    /// Sets the PKI secret `name`.
    pub async fn set_pki_secret(&self, name: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO pki_secrets (name, value) VALUES (?, ?)
             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Notes the certificate an enrollment token bought.
    pub async fn note_token_certificate(
        &self,
        digest: &str,
        serial: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE enrollment_tokens SET serial = ? WHERE digest = ?")
            .bind(serial)
            .bind(digest)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
