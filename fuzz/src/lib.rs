//! giva's fuzz harnesses. Each fuzz target in `fuzz_targets/` is one line
//! calling a function of [`harness`]; the integration suite includes the same
//! file to replay the crash inputs kept in `fuzz/regressions/<target>/`.

#[path = "harness.rs"]
pub mod harness;
