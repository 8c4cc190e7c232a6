//! [`Secret`]: a password, token or key that configuration files may hold
//! but that no log line, `Debug` dump or `--print-config` shows.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a secret prints as, everywhere.
pub const REDACTED: &str = "<redacted>";

/// A secret string. `Debug`, `Display` and `Serialize` show
/// [`REDACTED`] (an empty secret shows as empty, so that a dump still says
/// whether one is set); [`expose`](Secret::expose) is the one way to the
/// value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret holding `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True if no value is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn shown(&self) -> &'static str {
        if self.0.is_empty() { "" } else { REDACTED }
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({:?})", self.shown())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.shown())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.shown())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Where a secret may come from besides the configuration file itself:
/// a file (its content, trailing newline removed) or an environment
/// variable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretSource {
    /// Read the secret from this file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Read the secret from this environment variable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

/// Why a secret cannot be resolved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// More than one source was given for one secret.
    #[error("{name}: give the secret in one way only (inline, a file or an environment variable)")]
    Ambiguous {
        /// Which secret.
        name: String,
    },
    /// The value is the redaction marker: it was copied from a printed
    /// configuration.
    #[error(
        "{name}: the value {REDACTED:?} was copied from a printed configuration; give the real secret"
    )]
    Redacted {
        /// Which secret.
        name: String,
    },
    /// The file cannot be read.
    #[error("{name}: cannot read {}: {source}", path.display())]
    File {
        /// Which secret.
        name: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The environment variable is not set (or not UTF-8).
    #[error("{name}: the environment variable {var} is not set")]
    Env {
        /// Which secret.
        name: String,
        /// The variable.
        var: String,
    },
}

/// The secret named `name`, from the one place it is given: inline
/// (`inline`), a file or an environment variable (`source`).
///
/// # Errors
///
/// [`SecretError`]: more than one source, an unreadable file, an unset
/// variable, or the redaction marker given as the value.
pub fn resolve(name: &str, inline: &Secret, source: &SecretSource) -> Result<Secret, SecretError> {
    let given = usize::from(!inline.is_empty())
        + usize::from(source.file.is_some())
        + usize::from(source.env.is_some());
    if given > 1 {
        return Err(SecretError::Ambiguous { name: name.into() });
    }
    let value = if let Some(path) = &source.file {
        read_file(name, path)?
    } else if let Some(var) = &source.env {
        std::env::var(var).map_err(|_| SecretError::Env {
            name: name.into(),
            var: var.clone(),
        })?
    } else {
        inline.expose().to_string()
    };
    if value == REDACTED {
        return Err(SecretError::Redacted { name: name.into() });
    }
    Ok(Secret(value))
}

fn read_file(name: &str, path: &Path) -> Result<String, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretError::File {
        name: name.into(),
        path: path.to_owned(),
        source,
    })?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_itself() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(\"<redacted>\")");
        assert_eq!(s.to_string(), REDACTED);
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(
            Secret::default().to_string(),
            "",
            "an unset secret shows as unset"
        );
    }

    #[test]
    fn a_secret_comes_from_one_place_and_never_from_a_printed_config() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let by_file = SecretSource {
            file: Some(file.clone()),
            env: None,
        };
        assert_eq!(
            resolve("p", &Secret::default(), &by_file).unwrap().expose(),
            "from-file"
        );
        assert!(matches!(
            resolve("p", &Secret::new("x"), &by_file),
            Err(SecretError::Ambiguous { .. })
        ));
        assert!(matches!(
            resolve("p", &Secret::new(REDACTED), &SecretSource::default()),
            Err(SecretError::Redacted { .. })
        ));
        let unset = SecretSource {
            file: None,
            env: Some("GIVA_TEST_SURELY_UNSET_VARIABLE".into()),
        };
        assert!(matches!(
            resolve("p", &Secret::default(), &unset),
            Err(SecretError::Env { .. })
        ));
        let missing = SecretSource {
            file: Some(dir.path().join("nope")),
            env: None,
        };
        let e = resolve("p", &Secret::default(), &missing).unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
    }
}
