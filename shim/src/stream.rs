//! [`StreamError`]: why the content of a file could not be streamed to the
//! appliance (sent to it as the `ContentError` reason).

/// Why a content request could not be served.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Opening or reading the file failed.
    #[error("{0}")]
    Read(#[from] std::io::Error),
    /// The blocking reader task died.
    #[error("reader failed: {0}")]
    Reader(#[from] tokio::task::JoinError),
    /// The session ended under the transfer.
    #[error("session closed")]
    SessionClosed,
}
