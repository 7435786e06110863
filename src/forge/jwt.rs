//! The JSON Web Token a GitHub App signs to call the API as itself
//! (<https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/generating-a-json-web-token-jwt-for-a-github-app>):
//! RS256 over `{iat, exp, iss}` with the app's private key. Pure: the time
//! is given.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// How far in the past `iat` is put: GitHub refuses a JWT "issued in the
/// future", and this machine's clock may be ahead of GitHub's.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// `exp - iat`. GitHub refuses more than ten minutes; nine leaves room
/// for a clock that runs behind.
pub const LIFETIME: Duration = Duration::from_secs(9 * 60);

/// Who the app is: its numeric app id or its client id (`Iv1.…`), both
/// accepted by GitHub as `iss`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Issuer {
    AppId(u64),
    ClientId(String),
}

impl std::fmt::Display for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AppId(id) => write!(f, "{id}"),
            Self::ClientId(id) => f.write_str(id),
        }
    }
}

/// The private key cannot be used, or signing failed. No variant holds
/// key material, nor the key parser's own words (they could quote it).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{source_name} holds no RSA private key in PEM form (PKCS#1 \"BEGIN RSA PRIVATE KEY\" or PKCS#8 \"BEGIN PRIVATE KEY\")")]
    Key { source_name: String },
    #[error("cannot sign the GitHub App JWT with the key from {source_name}")]
    Sign { source_name: String },
    #[error("the system clock is before 1970")]
    Clock,
}

/// An app's private key, parsed. `Debug` shows only where it came from.
#[derive(Clone)]
pub struct AppKey {
    key: EncodingKey,
    /// `$NAME` or a file's path, for messages.
    pub source_name: String,
}

impl std::fmt::Debug for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppKey")
            .field("source_name", &self.source_name)
            .finish_non_exhaustive()
    }
}

impl AppKey {
    /// Parses a PEM RSA key, PKCS#1 or PKCS#8 (GitHub hands out PKCS#1;
    /// `openssl pkcs8` makes the other).
    pub fn from_pem(pem: &str, source_name: &str) -> Result<Self, Error> {
        let key = EncodingKey::from_rsa_pem(pem.trim().as_bytes()).map_err(|_| Error::Key {
            source_name: source_name.to_owned(),
        })?;
        Ok(Self {
            key,
            source_name: source_name.to_owned(),
        })
    }
}

/// The claims GitHub reads. `iss` is a number for an app id, as GitHub's
/// own examples and Octokit send it, and a string for a client id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    pub iat: u64,
    pub exp: u64,
    pub iss: serde_json::Value,
}

impl Claims {
    pub fn new(issuer: &Issuer, now: SystemTime) -> Result<Self, Error> {
        let now = now.duration_since(UNIX_EPOCH).map_err(|_| Error::Clock)?;
        let iat = now.saturating_sub(CLOCK_SKEW).as_secs();
        Ok(Self {
            iat,
            exp: iat + LIFETIME.as_secs(),
            iss: match issuer {
                Issuer::AppId(id) => serde_json::Value::from(*id),
                Issuer::ClientId(id) => serde_json::Value::from(id.as_str()),
            },
        })
    }
}

/// The signed JWT for `issuer` at `now`.
pub fn sign(issuer: &Issuer, key: &AppKey, now: SystemTime) -> Result<String, Error> {
    let claims = Claims::new(issuer, now)?;
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key.key).map_err(|_| {
        Error::Sign {
            source_name: key.source_name.clone(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, DecodingKey, Validation};

    const PKCS1: &str = include_str!("../../tests/fixtures/github-app-test-key.pkcs1.pem");
    const PKCS8: &str = include_str!("../../tests/fixtures/github-app-test-key.pkcs8.pem");
    const PUBLIC: &str = include_str!("../../tests/fixtures/github-app-test-key.pub.pem");

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn verify(jwt: &str) -> (jsonwebtoken::Header, Claims) {
        let key = DecodingKey::from_rsa_pem(PUBLIC.as_bytes()).expect("public key");
        let mut validation = Validation::new(Algorithm::RS256);
        // The claims are checked below against a fixed clock.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let data = decode::<Claims>(jwt, &key, &validation).expect("a valid signature");
        (data.header, data.claims)
    }

    #[test]
    fn github_app_jwt_claims_are_iat_a_minute_back_and_exp_nine_minutes_on() {
        let key = AppKey::from_pem(PKCS1, "app.pem").expect("PKCS#1 key");
        let jwt = sign(&Issuer::AppId(12345), &key, at(1_700_000_000)).expect("signed");
        let (header, claims) = verify(&jwt);
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(
            claims,
            Claims {
                iat: 1_700_000_000 - 60,
                exp: 1_700_000_000 - 60 + 540,
                iss: serde_json::json!(12345),
            }
        );
        assert!(claims.exp - claims.iat <= 600, "GitHub refuses over 10 min");
    }

    #[test]
    fn github_app_jwt_takes_pkcs8_keys_and_client_ids() {
        let key = AppKey::from_pem(PKCS8, "$KEY").expect("PKCS#8 key");
        let jwt = sign(&Issuer::ClientId("Iv1.abc".into()), &key, at(1_000)).expect("signed");
        let (_, claims) = verify(&jwt);
        assert_eq!(claims.iss, serde_json::json!("Iv1.abc"));
        assert_eq!((claims.iat, claims.exp), (940, 1480));
    }

    #[test]
    fn github_app_key_errors_name_the_source_never_the_key() {
        let garbage = "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END RSA PRIVATE KEY-----\n";
        let error = AppKey::from_pem(garbage, "/run/app.pem").expect_err("not a key");
        let message = error.to_string();
        assert!(message.contains("/run/app.pem"), "{message}");
        assert!(!message.contains("c2VjcmV0"), "{message}");
        assert!(AppKey::from_pem("", "$K").is_err());
        let key = AppKey::from_pem(PKCS1, "app.pem").expect("key");
        assert!(!format!("{key:?}").contains("BEGIN"));
    }
}
