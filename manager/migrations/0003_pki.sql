-- The manager's certificate authority, kept in the store (so that managers
-- that share a store share it), the certificates it issued, and the
-- one-time tokens that appliances and VMs enroll with.
--
-- A CA generation is trusted until it is retired: during a rotation the
-- old and the new are both trusted, and new certificates come from the
-- newest.
CREATE TABLE ca_generations (
    generation INTEGER PRIMARY KEY,
    cert_pem TEXT NOT NULL,
    key_pem TEXT NOT NULL,
    created_at_us INTEGER NOT NULL,
    -- When it stopped being trusted (0: trusted).
    retired_at_us INTEGER NOT NULL DEFAULT 0,
    -- The number of the last revocation list it signed.
    crl_number INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE certificates (
    -- Lower-case hex, as the certificate's serial number.
    serial TEXT PRIMARY KEY,
    generation INTEGER NOT NULL,
    role TEXT NOT NULL,
    name TEXT NOT NULL,
    issued_at_us INTEGER NOT NULL,
    not_after_us INTEGER NOT NULL,
    -- Who asked: an operator on this host, or an enrollment token's digest.
    issued_to TEXT NOT NULL,
    revoked_at_us INTEGER NOT NULL DEFAULT 0,
    revoke_reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX certificates_by_name ON certificates(role, name);
CREATE TABLE enrollment_tokens (
    -- SHA-256 of the token: the token itself is shown once and not kept.
    digest TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    name TEXT NOT NULL,
    -- The further DNS names and IP addresses the certificate is valid for
    -- (space-separated): fixed by the operator, never by the enrolling
    -- party, so that no appliance can get a certificate for the manager's
    -- host name.
    hosts TEXT NOT NULL DEFAULT '',
    created_at_us INTEGER NOT NULL,
    expires_at_us INTEGER NOT NULL,
    -- When it was used (0: unused), and the certificate it bought.
    used_at_us INTEGER NOT NULL DEFAULT 0,
    serial TEXT NOT NULL DEFAULT ''
);
-- Secrets of the PKI that are not keys of a CA: the clone key, with which
-- clone tokens are signed (appliances get it at enrollment to check them).
CREATE TABLE pki_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
