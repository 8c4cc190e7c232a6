//! Serving the appliance's content requests: ranges of a file, read with
//! `pread` on the descriptor the event came with, streamed in chunks.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use giva_proto::shim::{ContentChunk, FileIdentity, GuestMessage, guest_message};
use tokio::sync::mpsc;

use crate::stream::StreamError;
use crate::watch::state::Shared;

/// Size of the content chunks the watcher sends (small, to keep memory low:
/// at most `OUT_BUFFER` of them are queued).
pub const WATCH_CHUNK_SIZE: usize = 128 * 1024;

/// One content request being served.
pub(crate) struct Content {
    pub file: Arc<File>,
    pub seq: u64,
    pub offset: u64,
    pub length: u64,
    pub size: u64,
}

impl Content {
    /// Streams the requested range, up to the size announced in the event,
    /// reading with `pread` on the event's descriptor (off the async
    /// threads).
    pub async fn stream(
        &self,
        tx: &mpsc::Sender<GuestMessage>,
        shared: &Shared,
    ) -> Result<(), StreamError> {
        let end = if self.length == 0 {
            self.size
        } else {
            self.offset.saturating_add(self.length).min(self.size)
        };
        let mut pos = self.offset.min(end);
        loop {
            let want = usize::try_from(end - pos)
                .unwrap_or(usize::MAX)
                .min(WATCH_CHUNK_SIZE);
            let file = self.file.clone();
            let data = tokio::task::spawn_blocking(move || read_at(&file, pos, want)).await??;
            let n = data.len() as u64;
            let last = data.len() < want || pos + n >= end;
            shared.stats.bytes_sent.fetch_add(n, Ordering::Relaxed);
            let chunk = ContentChunk {
                seq: self.seq,
                offset: pos,
                data,
                last,
            };
            pos += n;
            tx.send(GuestMessage {
                msg: Some(guest_message::Msg::Chunk(chunk)),
            })
            .await
            .map_err(|_| StreamError::SessionClosed)?;
            if last {
                return Ok(());
            }
        }
    }
}

/// Reads up to `want` bytes at `pos` (fewer only at the end of the file).
fn read_at(file: &File, pos: u64, want: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; want];
    let mut filled = 0;
    while filled < want {
        match file.read_at(&mut buf[filled..], pos + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// The identity of an open file, from `fstat`.
///
/// # Errors
///
/// `fstat` failed.
pub fn identity_of(file: &File, image_id: &str) -> std::io::Result<(FileIdentity, bool)> {
    let md = file.metadata()?;
    Ok((
        crate::identity::from_metadata(&md, image_id),
        md.file_type().is_file(),
    ))
}
