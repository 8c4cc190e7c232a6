//! Errors by phase: building an [`Engine`](crate::Engine) and scanning.

use std::path::PathBuf;

/// Building an [`Engine`](crate::Engine) from a database failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A signature part expands into too many fixed-length variants
    /// (alternations multiply).
    #[error("signature {name:?}: part {part} expands into more than {limit} variants")]
    TooManyVariants {
        /// The signature name.
        name: String,
        /// The part index.
        part: usize,
        /// The limit.
        limit: usize,
    },
    /// A signature part has no static byte to anchor the search on.
    #[error("signature {name:?}: part {part} has no static byte")]
    NoStaticBytes {
        /// The signature name.
        name: String,
        /// The part index.
        part: usize,
    },
    /// The database's signatures could not be decoded.
    #[error("database: {0}")]
    Database(#[source] giva_signatures::LoadError),
    /// The engine stored in the database could not be used.
    #[error(transparent)]
    Stored(#[from] StoredError),
    /// The program of the patterns a split scan runs sequentially could not
    /// be built (it failed once and is not retried).
    #[error("the sequential program: {0}")]
    Sequential(std::sync::Arc<BuildError>),
    /// A pattern is malformed (no parts, or gap count not parts - 1).
    #[error("signature {name:?}: malformed pattern: {reason}")]
    Malformed {
        /// The signature name.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Why the engine stored in a database was not used (it is then rebuilt
/// from the signatures).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoredError {
    /// The bytes do not decode.
    #[error("stored engine index: {0}")]
    Wire(#[from] giva_signatures::wire::WireError),
    /// The bytes decode, but a rule that scanning relies on does not hold,
    /// or the blob is of another format or for other signatures.
    #[error("stored engine index: {0}")]
    Invalid(&'static str),
}

/// Loading signatures and building their engine failed
/// ([`Engine::load`](crate::Engine::load)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The signatures could not be loaded.
    #[error(transparent)]
    Signatures(#[from] giva_signatures::Error),
    /// The engine could not be built from them.
    #[error("cannot build the engine: {0}")]
    Build(#[from] BuildError),
}

/// Scanning failed before a verdict could be reached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// Opening, mapping or reading a file failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Reading from a stream failed.
    #[error("reading the input stream: {0}")]
    Read(#[source] std::io::Error),
}
