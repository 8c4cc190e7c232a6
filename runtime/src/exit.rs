//! A program's body, run and turned into an exit code: `main → run →
//! ExitCode`.

use std::future::Future;
use std::process::ExitCode;

/// The exit code of a program that failed before it could do its work
/// (bad configuration, an unreadable database, no runtime), as `clamscan`
/// uses 2 for errors.
pub const FAILURE: u8 = 2;

/// Runs `body` and returns its code, or prints `program: error` (with the
/// error's causes) to stderr and returns [`FAILURE`].
pub fn run(program: &str, body: impl FnOnce() -> anyhow::Result<u8>) -> ExitCode {
    match body() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("{program}: {e:#}");
            ExitCode::from(FAILURE)
        }
    }
}

/// [`run`] for an async body, on a multi-threaded tokio runtime.
pub fn run_async<F>(program: &str, body: F) -> ExitCode
where
    F: Future<Output = anyhow::Result<u8>>,
{
    run(program, || {
        let rt = tokio::runtime::Runtime::new()
            .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
        rt.block_on(body)
    })
}
