//! A command hook: runs a program with the event as JSON on its stdin.
//!
//! Exit status 0 means the tag was applied. The program runs without a
//! shell, with `GIVA_VM_ID` and `GIVA_TAG_OP` (`tag` or `untag`) in its
//! environment, and is killed when it outlives its timeout.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{ActionError, TagAction, TagRequest, truncate};
use crate::config::CommandConfig;

/// Runs a program per action.
#[derive(Debug)]
pub struct CommandAction {
    config: CommandConfig,
}

impl CommandAction {
    /// A hook for `config`.
    pub fn new(config: &CommandConfig) -> Self {
        CommandAction {
            config: config.clone(),
        }
    }
}

#[async_trait::async_trait]
impl TagAction for CommandAction {
    async fn apply(&self, request: &TagRequest) -> Result<(), ActionError> {
        let program = self.config.program.display().to_string();
        let mut child = tokio::process::Command::new(&self.config.program)
            .args(&self.config.args)
            .env("GIVA_VM_ID", &request.vm.vm_id)
            .env("GIVA_TAG_OP", if request.tag { "tag" } else { "untag" })
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ActionError::Spawn {
                program: program.clone(),
                reason: e.to_string(),
            })?;
        let mut stdin = child.stdin.take();
        let mut stderr = child.stderr.take();
        let payload = request.payload.as_bytes();
        let run = async {
            if let Some(s) = stdin.as_mut() {
                // A program that does not read its input is not an error.
                let _ = s.write_all(payload).await;
                let _ = s.shutdown().await;
            }
            drop(stdin.take());
            let mut err = Vec::new();
            if let Some(s) = stderr.as_mut() {
                let _ = s.take(64 * 1024).read_to_end(&mut err).await;
            }
            let status = child.wait().await;
            (status, err)
        };
        let ms = self.config.timeout_ms;
        match tokio::time::timeout(Duration::from_millis(ms.max(1)), run).await {
            Err(_) => Err(ActionError::Timeout { ms }),
            Ok((Err(e), _)) => Err(ActionError::Spawn {
                program,
                reason: e.to_string(),
            }),
            Ok((Ok(status), _)) if status.success() => Ok(()),
            Ok((Ok(status), err)) => Err(ActionError::Exit {
                code: status.code().unwrap_or(-1),
                stderr: truncate(&String::from_utf8_lossy(&err), 200),
            }),
        }
    }
}
