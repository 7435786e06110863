//! rustls on the `ring` provider, trusting the system's roots plus the
//! CA file git is told about; or, when the user turned verification off as
//! they would for git, trusting anything, loudly.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the CA file {path} (GIT_SSL_CAINFO or http.sslCAInfo)")]
    CaFile {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("the CA file {path} holds no usable certificate")]
    NoCertificate { path: PathBuf },
    #[error("cannot read the client certificate {path} (GIT_SSL_CERT or http.sslCert)")]
    ClientCert {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("the client certificate file {path} holds no certificate")]
    NoClientCert { path: PathBuf },
    /// The source is left out: it could quote key material.
    #[error("cannot read a private key from {path} (GIT_SSL_KEY or http.sslKey; an unencrypted PEM key is expected)")]
    ClientKey { path: PathBuf },
    #[error("cannot set up TLS")]
    Rustls(#[from] rustls::Error),
}

impl Error {
    /// Whether the client certificate or its key cannot be used.
    pub fn is_client_cert(&self) -> bool {
        matches!(
            self,
            Self::ClientCert { .. } | Self::NoClientCert { .. } | Self::ClientKey { .. }
        )
    }
}

/// `http.sslCert` and `http.sslKey`: a PEM certificate chain and its
/// private key. Without a key file, the key is looked for in the
/// certificate's file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: Option<PathBuf>,
}

impl ClientCert {
    fn load(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Error> {
        let chain = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|source| Error::ClientCert {
                path: self.cert.clone(),
                source,
            })?;
        if chain.is_empty() {
            return Err(Error::NoClientCert {
                path: self.cert.clone(),
            });
        }
        let key_path = self.key.as_ref().unwrap_or(&self.cert);
        let key = PrivateKeyDer::from_pem_file(key_path).map_err(|_| Error::ClientKey {
            path: key_path.clone(),
        })?;
        Ok((chain, key))
    }
}

/// The client configuration for one remote.
pub fn client_config(
    ca_info: Option<&Path>,
    no_verify: bool,
    client_cert: Option<&ClientCert>,
    http2: bool,
) -> Result<ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = if no_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
    } else {
        builder.with_root_certificates(roots(ca_info)?)
    };
    let mut config = match client_cert {
        Some(client_cert) => {
            let (chain, key) = client_cert.load()?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    // Offer h2 only when asked for (http.version=HTTP/2); otherwise say
    // HTTP/1.1, or a server may pick h2.
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(config)
}

/// The system's root certificates, read once per process: a fleet makes a
/// client per side per mirror, and reading the store (hundreds of files)
/// each time cost more than the rest of a small sync's setup.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: std::sync::OnceLock<Vec<CertificateDer<'static>>> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::debug!("skipping part of the system's certificates: {error}");
        }
        native.certs
    })
}

fn roots(ca_info: Option<&Path>) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(system_roots().iter().cloned());
    tracing::debug!("{added} system root certificates ({ignored} unusable)");
    if let Some(path) = ca_info {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|source| Error::CaFile {
                path: path.to_owned(),
                source,
            })?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(Error::NoCertificate {
                path: path.to_owned(),
            });
        }
    }
    Ok(roots)
}

/// `GIT_SSL_NO_VERIFY` / `http.sslVerify=false`: any certificate passes,
/// but handshake signatures are still checked against it.
#[derive(Debug)]
struct AcceptAnything(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
