//! Reading a [`SecretRef`] into a [`Token`], at sync time (and once when
//! the file is checked, to say early that a secret is missing).

use std::io;
use std::path::{Path, PathBuf};

use super::SecretRef;
use crate::transport::Token;

/// A referenced secret that cannot be read. No variant holds the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {name} is not set")]
    Unset { name: String },
    #[error("environment variable {name} is empty")]
    EmptyVariable { name: String },
    #[error("cannot read token file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("token file {} is empty", path.display())]
    EmptyFile { path: PathBuf },
}

/// The token `secret` names, from the process's environment or a file.
pub fn resolve_secret(secret: &SecretRef) -> Result<Token, SecretError> {
    resolve_secret_with(secret, &|name| std::env::var(name).ok(), &|path| {
        std::fs::read_to_string(path)
    })
}

/// [`resolve_secret`] with the environment and the file system given.
/// The secret is trimmed: a file written by `echo` ends with a newline that
/// is no part of the token.
pub fn resolve_secret_with(
    secret: &SecretRef,
    env: &dyn Fn(&str) -> Option<String>,
    read: &dyn Fn(&Path) -> io::Result<String>,
) -> Result<Token, SecretError> {
    match secret {
        SecretRef::Env(name) => {
            let value = env(name).ok_or_else(|| SecretError::Unset { name: name.clone() })?;
            let value = value.trim();
            if value.is_empty() {
                return Err(SecretError::EmptyVariable { name: name.clone() });
            }
            Ok(Token {
                secret: value.to_owned(),
                source: format!("${name}"),
            })
        }
        SecretRef::File(path) => {
            let text = read(path).map_err(|source| SecretError::Read {
                path: path.clone(),
                source,
            })?;
            let text = text.trim();
            if text.is_empty() {
                return Err(SecretError::EmptyFile { path: path.clone() });
            }
            Ok(Token {
                secret: text.to_owned(),
                source: path.display().to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "UP" => Some(" s3cret\n".into()),
            "BLANK" => Some("  ".into()),
            _ => None,
        }
    }

    fn read(path: &Path) -> io::Result<String> {
        match path.to_str() {
            Some("/run/token") => Ok("tok\n".into()),
            Some("/run/empty") => Ok("\n".into()),
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "not found")),
        }
    }

    fn resolve(secret: SecretRef) -> Result<Token, String> {
        resolve_secret_with(&secret, &env, &read).map_err(|e| e.to_string())
    }

    #[test]
    fn config_secret_from_env_or_file_is_trimmed_and_names_its_source() {
        assert_eq!(
            resolve(SecretRef::Env("UP".into())),
            Ok(Token {
                secret: "s3cret".into(),
                source: "$UP".into()
            })
        );
        assert_eq!(
            resolve(SecretRef::File("/run/token".into())),
            Ok(Token {
                secret: "tok".into(),
                source: "/run/token".into()
            })
        );
    }

    #[test]
    fn config_secret_missing_or_empty_is_an_error_without_the_value() {
        assert_eq!(
            resolve(SecretRef::Env("NOPE".into())),
            Err("environment variable NOPE is not set".into())
        );
        assert_eq!(
            resolve(SecretRef::Env("BLANK".into())),
            Err("environment variable BLANK is empty".into())
        );
        assert_eq!(
            resolve(SecretRef::File("/run/none".into())),
            Err("cannot read token file /run/none".into())
        );
        assert_eq!(
            resolve(SecretRef::File("/run/empty".into())),
            Err("token file /run/empty is empty".into())
        );
    }
}
