//! Compiling body patterns into [`Program`]s: each part is expanded into
//! fixed-length variants (`expand.rs`), each variant gets its rarest
//! static run as its atom (`atom.rs`), and one atom index is built over
//! all atoms (`build.rs`). `program.rs` holds the compiled form, which
//! the executor runs and the stored engine keeps.

mod atom;
mod build;
mod derive;
mod expand;
mod program;

pub(crate) use build::Source;
pub(crate) use program::{Elem, Entry, Owner, Program, split_span};
