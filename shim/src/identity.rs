//! A file's identity as the appliance keys its verdict cache: size,
//! modification time, inode, device and the image the VM was cloned from.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

use giva_proto::shim::FileIdentity;

/// The identity of the file whose metadata is `md`, in a VM cloned from
/// `image_id`.
pub fn from_metadata(md: &Metadata, image_id: &str) -> FileIdentity {
    FileIdentity {
        size: md.len(),
        mtime_ns: md
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(md.mtime_nsec()),
        file_id: md.ino(),
        device_id: md.dev(),
        image_id: image_id.to_string(),
    }
}
