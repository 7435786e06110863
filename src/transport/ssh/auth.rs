//! Public-key authentication in OpenSSH's order: the agent's identities
//! (certificates first), then the identity files, each with its user
//! certificates (`<key>-cert.pub`, `CertificateFile`) before the plain key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::{self, Handle};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::ssh_key::public::KeyData;
use russh::keys::ssh_key::Certificate;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg};

use super::target::Target;
use super::Error;

/// The public half of an identity: `<file>.pub`, or the public part that an
/// OpenSSH private key file keeps unencrypted.
fn public_key_of(path: &Path) -> Option<russh::keys::PublicKey> {
    russh::keys::load_public_key(with_suffix(path, ".pub"))
        .ok()
        .or_else(|| {
            let text = std::fs::read_to_string(path).ok()?;
            let key = russh::keys::ssh_key::PrivateKey::from_openssh(text).ok()?;
            Some(key.public_key().clone())
        })
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Has the agent sign with the plain key for a certificate authentication.
/// russh would hand the agent the certificate, which an agent that holds
/// only the key (its certificate lives on disk) does not know; the
/// signature is the key's either way.
struct PlainKeySigner<'a, R: russh::keys::agent::client::AgentStream> {
    agent: &'a mut AgentClient<R>,
    key: russh::keys::PublicKey,
}

impl<R> russh::Signer for PlainKeySigner<'_, R>
where
    R: russh::keys::agent::client::AgentStream + Unpin + Send,
{
    type Error = russh::AgentAuthError;

    async fn auth_sign(
        &mut self,
        _identity: &AgentIdentity,
        hash_alg: Option<HashAlg>,
        to_sign: Vec<u8>,
    ) -> Result<Vec<u8>, Self::Error> {
        let identity = AgentIdentity::PublicKey {
            key: self.key.clone(),
            comment: String::new(),
        };
        Ok(self
            .agent
            .sign_request(&identity, hash_alg, to_sign)
            .await?)
    }
}

/// The certificates for the key of `identity`, in OpenSSH's order:
/// `<identity>-cert.pub`, then each `CertificateFile` for this key.
fn certificates_for(
    target: &Target,
    identity: &Path,
    key: &russh::keys::ssh_key::PrivateKey,
) -> Vec<(PathBuf, Certificate)> {
    certificates_matching(
        std::iter::once(with_suffix(identity, "-cert.pub"))
            .chain(target.certificate_files.iter().cloned()),
        key.public_key().key_data(),
    )
}

/// The certificates among `paths` that are for `key`; unreadable files
/// and other keys' certificates are passed over.
fn certificates_matching(
    paths: impl Iterator<Item = PathBuf>,
    key: &KeyData,
) -> Vec<(PathBuf, Certificate)> {
    paths
        .filter_map(|path| {
            let text = std::fs::read_to_string(&path).ok()?;
            let cert = Certificate::from_openssh(text.trim()).ok()?;
            (cert.public_key() == key).then_some((path, cert))
        })
        .collect()
}

/// Public-key authentication in OpenSSH's order: the agent's keys, then
/// the identity files, each with its certificates first. Key material
/// never reaches a message.
pub async fn authenticate<H: client::Handler>(
    handle: &mut Handle<H>,
    target: &Target,
) -> Result<(), Error> {
    let mut tried = Vec::new();
    let rsa_hash = handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten();
    let agent_socket = target.agent.path();
    let agent_in_use = agent_socket.is_some();
    // With IdentitiesOnly, OpenSSH offers only the agent's keys that match a
    // configured IdentityFile (an encrypted key unlocked in the agent).
    let allowed: Option<Vec<russh::keys::PublicKey>> = target.identities_only.then(|| {
        target
            .identity_files
            .iter()
            .filter_map(|p| public_key_of(p))
            .collect()
    });
    if let Some(socket) = &agent_socket {
        match AgentClient::connect_uds(socket).await {
            Ok(mut agent) => {
                let identities: Vec<_> = agent
                    .request_identities()
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|identity| match &allowed {
                        Some(allowed) => allowed
                            .iter()
                            .any(|k| k.key_data() == identity.public_key().key_data()),
                        None => true,
                    })
                    .collect();
                tried.push(format!("ssh-agent ({} keys)", identities.len()));
                for identity in identities {
                    let key = identity.public_key().into_owned();
                    let hash = if key.algorithm().is_rsa() {
                        rsa_hash
                    } else {
                        None
                    };
                    // A certificate the agent holds (Teleport, `ssh-add` of a
                    // key with its -cert.pub) is its own identity; a plain key
                    // may have certificates on disk (Vault's signed keys).
                    let certificates = match &identity {
                        AgentIdentity::Certificate { certificate, .. } => {
                            vec![certificate.clone()]
                        }
                        AgentIdentity::PublicKey { .. } => certificates_matching(
                            target
                                .identity_files
                                .iter()
                                .map(|p| with_suffix(p, "-cert.pub"))
                                .chain(target.certificate_files.iter().cloned()),
                            key.key_data(),
                        )
                        .into_iter()
                        .map(|(_, cert)| cert)
                        .collect(),
                    };
                    for cert in certificates {
                        let mut signer = PlainKeySigner {
                            agent: &mut agent,
                            key: key.clone(),
                        };
                        match handle
                            .authenticate_certificate_with(&target.user, cert, hash, &mut signer)
                            .await
                        {
                            Ok(result) if result.success() => return Ok(()),
                            Ok(_) => {}
                            Err(e) => tracing::debug!("agent certificate refused: {e:?}"),
                        }
                    }
                    if let AgentIdentity::Certificate { .. } = identity {
                        continue;
                    }
                    match handle
                        .authenticate_publickey_with(&target.user, key, hash, &mut agent)
                        .await
                    {
                        Ok(result) if result.success() => return Ok(()),
                        Ok(_) => {}
                        Err(e) => tracing::debug!("agent key refused: {e:?}"),
                    }
                }
            }
            Err(e) => tracing::debug!("no usable ssh-agent: {e}"),
        }
    }
    let session_error = |source| Error::Session {
        host_port: target.host_port(),
        source,
    };
    let mut encrypted = None;
    for path in &target.identity_files {
        if !path.exists() {
            continue;
        }
        let key = match russh::keys::load_secret_key(path, None) {
            Ok(key) => key,
            Err(russh::keys::Error::KeyIsEncrypted) => {
                tried.push(format!("{} (encrypted)", path.display()));
                encrypted.get_or_insert_with(|| path.clone());
                continue;
            }
            Err(e) => {
                tracing::debug!("cannot load {}: {e}", path.display());
                tried.push(format!("{} (unreadable)", path.display()));
                continue;
            }
        };
        let key = Arc::new(key);
        for (cert_path, cert) in certificates_for(target, path, &key) {
            tried.push(format!("{} (certificate)", cert_path.display()));
            match handle
                .authenticate_openssh_cert(&target.user, Arc::clone(&key), cert)
                .await
            {
                Ok(result) if result.success() => return Ok(()),
                Ok(_) => {}
                Err(source) => return Err(session_error(source)),
            }
        }
        tried.push(path.display().to_string());
        let key = PrivateKeyWithHashAlg::new(key, rsa_hash);
        match handle.authenticate_publickey(&target.user, key).await {
            Ok(result) if result.success() => return Ok(()),
            Ok(_) => {}
            Err(source) => return Err(session_error(source)),
        }
    }
    if let Some(path) = encrypted {
        if !agent_in_use {
            return Err(Error::EncryptedKey {
                path: path.display().to_string(),
            });
        }
    }
    Err(Error::AuthFailed {
        user: target.user.clone(),
        host_port: target.host_port(),
        tried: if tried.is_empty() {
            "no key found (no ssh-agent, no IdentityFile, no ~/.ssh/id_* file)".into()
        } else {
            tried.join(", ")
        },
    })
}
