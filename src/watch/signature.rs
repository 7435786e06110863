//! Webhook authentication, over bytes: no I/O.
//!
//! GitHub signs the raw body with HMAC-SHA256 under the hook's secret and
//! sends `X-Hub-Signature-256: sha256=<64 hex digits>`
//! (<https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries>).
//! GitLab sends the secret itself in `X-Gitlab-Token`
//! (<https://docs.gitlab.com/user/project/integrations/webhooks/#custom-headers>).
//! Both are compared in constant time, so the time a refusal takes says
//! nothing about how much of a guess was right.

use ring::hmac;

use super::WebhookSecret;

/// GitHub's signature header.
pub const GITHUB_SIGNATURE: &str = "x-hub-signature-256";
/// GitLab's token header.
pub const GITLAB_TOKEN: &str = "x-gitlab-token";

/// What a request offers as proof that it knows a mirror's secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// `X-Hub-Signature-256`'s value, as sent.
    GithubSignature(Vec<u8>),
    /// `X-Gitlab-Token`'s value, as sent.
    GitlabToken(Vec<u8>),
}

/// `Debug` shows which header came, never its value.
impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::GithubSignature(_) => f.write_str("GithubSignature(..)"),
            Self::GitlabToken(_) => f.write_str("GitlabToken(..)"),
        }
    }
}

impl Credential {
    /// The credential among a request's headers: GitHub's signature when
    /// present (it covers the body), else GitLab's token; `None` without
    /// either. `header` looks a header up by its lower-case name.
    pub fn from_headers<'h>(header: impl Fn(&str) -> Option<&'h [u8]>) -> Option<Self> {
        if let Some(signature) = header(GITHUB_SIGNATURE) {
            return Some(Self::GithubSignature(signature.to_vec()));
        }
        header(GITLAB_TOKEN).map(|token| Self::GitlabToken(token.to_vec()))
    }

    /// Whether this credential proves knowledge of `secret` for `body`.
    pub fn verifies(&self, secret: &WebhookSecret, body: &[u8]) -> bool {
        match self {
            Self::GithubSignature(header) => verify_github(secret, body, header),
            Self::GitlabToken(token) => verify_gitlab(secret, token),
        }
    }
}

/// Whether `header` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under
/// `secret`. A malformed header is simply not a match.
pub fn verify_github(secret: &WebhookSecret, body: &[u8], header: &[u8]) -> bool {
    let Some(hex) = header.strip_prefix(b"sha256=") else {
        return false;
    };
    let Some(tag) = decode_hex(hex) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.0.as_bytes());
    hmac::verify(&key, body, &tag).is_ok()
}

/// Whether `token` is `secret`. ring's constant-time slice comparison is
/// deprecated, so both sides go through HMAC under the secret and the tags
/// are compared by `hmac::verify`, which is constant-time; equal tags mean
/// equal values.
pub fn verify_gitlab(secret: &WebhookSecret, token: &[u8]) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.0.as_bytes());
    let expected = hmac::sign(&key, secret.0.as_bytes());
    hmac::verify(&key, token, expected.as_ref()).is_ok()
}

/// `body`'s GitHub signature header value under `secret`: what a sender
/// puts in `X-Hub-Signature-256`.
pub fn sign_github(secret: &WebhookSecret, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.0.as_bytes());
    let tag = hmac::sign(&key, body);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for byte in tag.as_ref() {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// 32 bytes from 64 hex digits (either case); `None` for anything else.
fn decode_hex(hex: &[u8]) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> WebhookSecret {
        WebhookSecret(text.to_owned())
    }

    /// GitHub's own worked example from "Validating webhook deliveries":
    /// secret "It's a Secret to Everybody", payload "Hello, World!".
    const GITHUB_EXAMPLE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github_documented_example_verifies() {
        let secret = secret("It's a Secret to Everybody");
        assert!(verify_github(
            &secret,
            b"Hello, World!",
            GITHUB_EXAMPLE.as_bytes()
        ));
        assert_eq!(sign_github(&secret, b"Hello, World!"), GITHUB_EXAMPLE);
    }

    #[test]
    fn github_signature_in_upper_case_hex_verifies() {
        let secret = secret("It's a Secret to Everybody");
        let upper = format!("sha256={}", GITHUB_EXAMPLE[7..].to_ascii_uppercase());
        assert!(verify_github(&secret, b"Hello, World!", upper.as_bytes()));
    }

    #[test]
    fn github_signature_of_another_body_or_secret_is_refused() {
        let right = secret("It's a Secret to Everybody");
        let example = GITHUB_EXAMPLE.as_bytes();
        assert!(!verify_github(&right, b"Hello, World?", example));
        assert!(!verify_github(&secret("wrong"), b"Hello, World!", example));
    }

    #[test]
    fn malformed_github_headers_are_refused() {
        let secret = secret("It's a Secret to Everybody");
        let body = b"Hello, World!";
        for header in [
            "",
            "sha256=",
            // The legacy SHA-1 header's form.
            "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            &GITHUB_EXAMPLE[7..],
            &GITHUB_EXAMPLE[..GITHUB_EXAMPLE.len() - 2],
            &format!("{GITHUB_EXAMPLE}00"),
            &format!("{}zz", &GITHUB_EXAMPLE[..GITHUB_EXAMPLE.len() - 2]),
            &format!("{GITHUB_EXAMPLE} "),
        ] {
            assert!(
                !verify_github(&secret, body, header.as_bytes()),
                "{header:?}"
            );
        }
    }

    #[test]
    fn gitlab_token_must_equal_the_secret() {
        let secret = secret("s3cret");
        assert!(verify_gitlab(&secret, b"s3cret"));
        for token in ["", "s3cre", "s3cret ", "S3CRET", "s3cret\0"] {
            assert!(!verify_gitlab(&secret, token.as_bytes()), "{token:?}");
        }
    }

    #[test]
    fn github_signature_wins_over_gitlab_token() {
        let headers = |name: &str| match name {
            GITHUB_SIGNATURE => Some(&b"sha256=00"[..]),
            GITLAB_TOKEN => Some(&b"s3cret"[..]),
            _ => None,
        };
        let credential = Credential::from_headers(headers).expect("both headers are there");
        assert!(matches!(credential, Credential::GithubSignature(_)));
        assert!(!credential.verifies(&secret("s3cret"), b"{}"));
        assert_eq!(format!("{credential:?}"), "GithubSignature(..)");
    }

    #[test]
    fn no_header_is_no_credential() {
        assert_eq!(Credential::from_headers(|_| None), None);
    }
}
