//! Who may call what: operators and readers present a bearer token
//! (`authorization: Bearer <token>`), checked in constant time.
//!
//! State-changing calls (`UntagVm`, `RequestScan`) need the operator
//! token; reading calls (`ListEvents`, `ListVms`) need the reader token or
//! the operator's. A call without a token gets `UNAUTHENTICATED`; one with
//! a token of too little right gets `PERMISSION_DENIED`. The appliances'
//! calls (`Notify`, `Heartbeat`, `Subscribe`) are not covered here: they
//! are to be authenticated by their TLS certificates.

use giva_runtime::Secret;
use giva_runtime::token::{self, TokenError};
use tonic::{Request, Status};

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Read events and VMs.
    Reader,
    /// Change state: release or scan a VM (reading included).
    Operator,
}

/// The tokens the manager accepts.
#[derive(Debug, Clone)]
pub struct Auth {
    operator: Secret,
    reader: Option<Secret>,
}

impl Auth {
    /// Accepts `operator` for everything and `reader`, if any, for reading.
    pub fn new(operator: Secret, reader: Option<Secret>) -> Self {
        Auth { operator, reader }
    }

    /// A fresh random operator token (for a manager run in-process).
    ///
    /// # Errors
    ///
    /// The kernel's random source cannot be read.
    pub fn generate() -> std::io::Result<Self> {
        Ok(Auth::new(Secret::new(token::random_hex(32)?), None))
    }

    /// The operator token in `operator_file` (made there, mode 0600, at
    /// first start) and the reader token in `reader_file`, if one is given.
    ///
    /// # Errors
    ///
    /// A token file cannot be made or read, or others may read it.
    pub fn from_files(
        operator_file: &std::path::Path,
        reader_file: Option<&std::path::Path>,
    ) -> Result<Self, TokenError> {
        Ok(Auth::new(
            token::load_or_create(operator_file)?,
            reader_file.map(token::load_or_create).transpose()?,
        ))
    }

    /// The operator token (for in-process callers such as tests).
    pub fn operator_token(&self) -> &Secret {
        &self.operator
    }

    /// Checks that `request` carries a token good for `role`.
    ///
    /// # Errors
    ///
    /// `UNAUTHENTICATED` without a (valid) token, `PERMISSION_DENIED` with a
    /// reader token for an operator call.
    pub fn check<T>(&self, request: &Request<T>, role: Role) -> Result<(), Status> {
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(token::bearer);
        let Some(given) = given else {
            return Err(Status::unauthenticated(
                "this call needs a token: `authorization: Bearer <token>` (giva-manager reads \
                 it from --token-file, by default the operator.token in its state directory)",
            ));
        };
        if token::matches(given, &self.operator) {
            return Ok(());
        }
        let reader = self
            .reader
            .as_ref()
            .is_some_and(|r| token::matches(given, r));
        match (reader, role) {
            (true, Role::Reader) => Ok(()),
            (true, Role::Operator) => Err(Status::permission_denied(
                "a reader token may not change state; this call needs the operator token",
            )),
            (false, _) => Err(Status::unauthenticated("unknown token")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(token: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(t) = token {
            r.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        r
    }

    #[test]
    fn each_role_is_checked_and_each_refusal_is_named() {
        let auth = Auth::new(Secret::new("op"), Some(Secret::new("rd")));
        assert!(auth.check(&req(Some("op")), Role::Operator).is_ok());
        assert!(auth.check(&req(Some("op")), Role::Reader).is_ok());
        assert!(auth.check(&req(Some("rd")), Role::Reader).is_ok());
        let code = |r: Result<(), Status>| r.unwrap_err().code();
        assert_eq!(
            code(auth.check(&req(Some("rd")), Role::Operator)),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            code(auth.check(&req(None), Role::Reader)),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            code(auth.check(&req(Some("guess")), Role::Reader)),
            tonic::Code::Unauthenticated
        );
    }
}
