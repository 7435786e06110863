//! known_hosts files (sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT") and the
//! decision OpenSSH makes with them: pure, over the files' text.
//!
//! A line is `[@marker] patterns keytype base64 [comment]`. Patterns are
//! comma-separated names with `*`/`?` and `!` negation, or one hashed name
//! (`|1|salt|hmac`, `ssh-keygen -H`); a server on a port other than 22 is
//! looked up as `[host]:port`. `@cert-authority` lines name a CA whose
//! host certificates are trusted for the matching hosts; `@revoked` lines
//! name keys never to accept.
//!
//! Hand-written: russh's `check_known_hosts_path` knows neither marker nor
//! wildcard patterns.

use std::path::PathBuf;

use russh::keys::ssh_key::certificate::CertType;
use russh::keys::ssh_key::public::KeyData;
use russh::keys::ssh_key::{Certificate, PublicKey};
use russh::keys::HashAlg;

use super::config;

/// What a line is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// A host key.
    Key,
    CertAuthority,
    Revoked,
}

/// One usable line of a known_hosts file.
#[derive(Debug, Clone)]
pub struct Entry {
    pub marker: Marker,
    pub patterns: String,
    pub key: KeyData,
    /// 1-based.
    pub line: usize,
}

/// A known_hosts file as read.
#[derive(Debug, Clone)]
pub struct File {
    pub path: PathBuf,
    pub entries: Vec<Entry>,
}

impl File {
    /// The usable lines of `text`; comments, blank and malformed lines
    /// are skipped, as OpenSSH skips them.
    pub fn parse(path: PathBuf, text: &str) -> Self {
        let mut entries = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let Some(mut first) = fields.next() else {
                continue;
            };
            let marker = match first {
                "@cert-authority" => Marker::CertAuthority,
                "@revoked" => Marker::Revoked,
                _ if first.starts_with('@') => continue,
                _ => Marker::Key,
            };
            if marker != Marker::Key {
                let Some(next) = fields.next() else {
                    continue;
                };
                first = next;
            }
            let (Some(kind), Some(blob)) = (fields.next(), fields.next()) else {
                continue;
            };
            let Ok(key) = PublicKey::from_openssh(&format!("{kind} {blob}")) else {
                continue;
            };
            entries.push(Entry {
                marker,
                patterns: first.to_owned(),
                key: key.key_data().clone(),
                line: index + 1,
            });
        }
        File { path, entries }
    }
}

/// The name a host is looked up under.
pub fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Whether a line's patterns cover `name`: a hashed name equal to it, or
/// any positive pattern and no negated one.
pub fn patterns_match(patterns: &str, name: &str) -> bool {
    if let Some(hashed) = patterns.strip_prefix("|1|") {
        return hashed_matches(hashed, name);
    }
    config::pattern_list_matches(patterns, name)
}

/// `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`.
fn hashed_matches(hashed: &str, name: &str) -> bool {
    use ring::hmac;
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Some(salt), Some(hash)) = (base64_decode(salt), base64_decode(hash)) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
    hmac::verify(&key, name.as_bytes(), &hash).is_ok()
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut buffer = 0u32;
    let mut bits = 0;
    for byte in text.trim_end_matches('=').bytes() {
        let value = ALPHABET.iter().position(|&c| c == byte)? as u32;
        buffer = (buffer << 6) | value;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// What the server presented.
pub enum Presented<'a> {
    Key(&'a PublicKey),
    Certificate(&'a Certificate),
}

/// The outcome of checking a server's host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Trusted,
    /// The key, or the CA that signed its certificate, is `@revoked`.
    Revoked {
        file: PathBuf,
        line: usize,
    },
    /// A different key of the same type is recorded for the host.
    Changed {
        file: PathBuf,
        line: usize,
    },
    /// A trusted CA signed the certificate, but it is not valid for this
    /// host now.
    BadCertificate {
        reason: String,
    },
    Unknown,
}

/// Checks what the server presented for `host` (the name dialled, which a
/// host certificate must name as a principal) on `port`, at `now` (Unix
/// seconds), against every file.
///
/// As OpenSSH (`check_host_key`): revocation first, then a certificate from
/// a CA listed for the host must be valid (type, signature, dates,
/// principal) or the connection is refused; a certificate from no listed
/// CA is checked as the plain key inside it.
pub fn check(files: &[File], host: &str, port: u16, presented: Presented<'_>, now: u64) -> Verdict {
    let name = lookup_name(host, port);
    let entries = || {
        files.iter().flat_map(|f| {
            f.entries
                .iter()
                .filter(|e| patterns_match(&e.patterns, &name))
                .map(move |e| (f, e))
        })
    };
    let key = match &presented {
        Presented::Key(key) => key.key_data(),
        Presented::Certificate(cert) => cert.public_key(),
    };
    let revoked = |data: &KeyData| {
        entries()
            .find(|(_, e)| e.marker == Marker::Revoked && &e.key == data)
            .map(|(f, e)| Verdict::Revoked {
                file: f.path.clone(),
                line: e.line,
            })
    };
    if let Some(verdict) = revoked(key) {
        return verdict;
    }
    if let Presented::Certificate(cert) = &presented {
        let ca = cert.signature_key();
        if let Some(verdict) = revoked(ca) {
            return verdict;
        }
        let listed = entries().any(|(_, e)| e.marker == Marker::CertAuthority && &e.key == ca);
        if listed {
            return match certificate_problem(cert, host, now) {
                None => Verdict::Trusted,
                Some(reason) => Verdict::BadCertificate { reason },
            };
        }
    }
    let mut changed = None;
    for (file, entry) in entries().filter(|(_, e)| e.marker == Marker::Key) {
        if &entry.key == key {
            return Verdict::Trusted;
        }
        if entry.key.algorithm() == key.algorithm() && changed.is_none() {
            changed = Some(Verdict::Changed {
                file: file.path.clone(),
                line: entry.line,
            });
        }
    }
    changed.unwrap_or(Verdict::Unknown)
}

/// Whether any `@cert-authority` line covers the host: only then does the
/// client ask for host certificates, as OpenSSH prefers the algorithms it
/// has keys for.
pub fn has_authority_for(files: &[File], host: &str, port: u16) -> bool {
    let name = lookup_name(host, port);
    files
        .iter()
        .flat_map(|f| &f.entries)
        .any(|e| e.marker == Marker::CertAuthority && patterns_match(&e.patterns, &name))
}

/// Why a certificate from a trusted CA does not do for `host`, if it
/// does not. An empty principal list is accepted, as OpenSSH accepts it
/// for host certificates.
fn certificate_problem(cert: &Certificate, host: &str, now: u64) -> Option<String> {
    if cert.cert_type() != CertType::Host {
        return Some("it is a user certificate, not a host certificate".into());
    }
    let principals = cert.valid_principals();
    if !principals.is_empty() && !principals.iter().any(|p| p == host) {
        return Some(format!(
            "it is not valid for {host:?} (principals: {})",
            principals.join(", ")
        ));
    }
    if now < cert.valid_after() {
        return Some("it is not valid yet".into());
    }
    if now >= cert.valid_before() {
        return Some("it has expired".into());
    }
    let fingerprint = cert.signature_key().fingerprint(HashAlg::Sha256);
    if let Err(e) = cert.validate_at(now, [&fingerprint]) {
        return Some(format!("its signature does not verify ({e})"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with ssh-keygen: two CAs, a host key; the host key signed by CA
    // as a host certificate for principal "git.example" valid 2020-2040
    // (HOST_CERT), the same but expired in 2001 (EXPIRED), by OTHER_CA
    // (BY_OTHER_CA), and by CA as a user certificate (USER_CERT).
    const CA: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDHG7CTa5SAirW33MSk1RRI5j+5BxZ6zzjfTv+EbZ63X";
    const OTHER_CA: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE7W/LHshTEqLE9Y/LYcJTsZv6om9G3xfLL52NFPiBy0";
    const HOST: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPYd+vI+Ml69dQHvyKQg6z/SVXMo60DmVt2xWR5/W7P3";
    const HOST_CERT: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIJwcEsAy9zGBcgA0ztkYFCaZtAXXjoCmtv0Fjx7sPRCCAAAAIPYd+vI+Ml69dQHvyKQg6z/SVXMo60DmVt2xWR5/W7P3AAAAAAAAAAEAAAACAAAABmhvc3RpZAAAAA8AAAALZ2l0LmV4YW1wbGUAAAAAXgvhAAAAAACDqn6AAAAAAAAAAAAAAAAAAAAAMwAAAAtzc2gtZWQyNTUxOQAAACAxxuwk2uUgIq1t9zEpNUUSOY/uQcWes84307/hG2et1wAAAFMAAAALc3NoLWVkMjU1MTkAAABAP+maFyTkqckDeo3Rr6Tvozv4adzY0Hryzr0v4uoLnufa+FDODSkjQ3R5+lob8ko5IvfqDCYSekGh+cHgabw5DQ==";
    const EXPIRED: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIN9ojqSpiGXUsOFGRql1ojgqY9oIQkraUi2uAVLI1+I0AAAAIPYd+vI+Ml69dQHvyKQg6z/SVXMo60DmVt2xWR5/W7P3AAAAAAAAAAMAAAACAAAAA2V4cAAAAA8AAAALZ2l0LmV4YW1wbGUAAAAAOG1DgAAAAAA6T8iAAAAAAAAAAAAAAAAAAAAAMwAAAAtzc2gtZWQyNTUxOQAAACAxxuwk2uUgIq1t9zEpNUUSOY/uQcWes84307/hG2et1wAAAFMAAAALc3NoLWVkMjU1MTkAAABAjCqFR4L3Q7iXdeDtxWKIovF6hOqWXfiqqGxgSxIvtpu0GgMe1XvfgL2UsHAmSInYGNyHTACWy+mqD7Rw3mQRBw==";
    const BY_OTHER_CA: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIELMlvOrPHbqlo+PqwwvgYoE3sTOsWTA6hGm75FnTyB2AAAAIPYd+vI+Ml69dQHvyKQg6z/SVXMo60DmVt2xWR5/W7P3AAAAAAAAAAQAAAACAAAABW90aGVyAAAADwAAAAtnaXQuZXhhbXBsZQAAAABeC+EAAAAAAIOqfoAAAAAAAAAAAAAAAAAAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIE7W/LHshTEqLE9Y/LYcJTsZv6om9G3xfLL52NFPiBy0AAAAUwAAAAtzc2gtZWQyNTUxOQAAAECvZt2UXswxp/4dRUg/EoM+g1GRmiwwhXUb3s/Lxt899vrOGdjm3L5DhE1ErceHKTawdm0aSRg5GkkObGCkahEI";
    const USER_CERT: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIC0aPSgelmWoBKo4jlh0zgBDTe2uG1uOhI4sWEozRKmuAAAAIPYd+vI+Ml69dQHvyKQg6z/SVXMo60DmVt2xWR5/W7P3AAAAAAAAAAIAAAABAAAABnVzZXJpZAAAAA8AAAALZ2l0LmV4YW1wbGUAAAAAXgvhAAAAAACDqn6AAAAAAAAAAIIAAAAVcGVybWl0LVgxMS1mb3J3YXJkaW5nAAAAAAAAABdwZXJtaXQtYWdlbnQtZm9yd2FyZGluZwAAAAAAAAAWcGVybWl0LXBvcnQtZm9yd2FyZGluZwAAAAAAAAAKcGVybWl0LXB0eQAAAAAAAAAOcGVybWl0LXVzZXItcmMAAAAAAAAAAAAAADMAAAALc3NoLWVkMjU1MTkAAAAgMcbsJNrlICKtbfcxKTVFEjmP7kHFnrPON9O/4RtnrdcAAABTAAAAC3NzaC1lZDI1NTE5AAAAQCRGnCyg1AcpNq6PoLEDj6b+RDaibuYH5CYRzq2di2WwWCIjHfJIZ2uEtVPITI6xRNLm9wic4gma6YtIDPpmRgM=";
    /// 2026-01-01.
    const NOW: u64 = 1_767_225_600;

    fn key(text: &str) -> PublicKey {
        PublicKey::from_openssh(text).expect("because the test key parses")
    }

    fn cert(text: &str) -> Certificate {
        Certificate::from_openssh(text).expect("because the test certificate parses")
    }

    fn file(text: &str) -> Vec<File> {
        vec![File::parse(PathBuf::from("/kh"), text)]
    }

    #[test]
    fn plain_keys_wildcards_negation_and_ports() {
        let host = key(HOST);
        let files = file(&format!(
            "# comment\n\n*.example,!bad.example {HOST}\n[10.0.0.1]:2222 {OTHER_CA}\n"
        ));
        let at = |h: &str, p: u16| check(&files, h, p, Presented::Key(&host), NOW);
        assert_eq!(at("git.example", 22), Verdict::Trusted);
        assert_eq!(at("bad.example", 22), Verdict::Unknown);
        assert_eq!(
            at("git.example", 2222),
            Verdict::Unknown,
            "port 2222 is [host]:port"
        );
        assert_eq!(
            at("10.0.0.1", 2222),
            Verdict::Changed {
                file: PathBuf::from("/kh"),
                line: 4
            }
        );
    }

    #[test]
    fn hashed_names() {
        // `ssh-keygen -H` of "[127.0.0.1]:2222".
        let files = file("|1|Fmb3vRFJ6hAu9Xb0Vt7yvzQL1sQ=|gkyp5uXjENk1enbs+qR7hCq88EY= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPYd+vI+Ml69dQHvyKQg6z/SVXMo60DmVt2xWR5/W7P3");
        let host = key(HOST);
        assert_eq!(
            check(&files, "127.0.0.1", 2222, Presented::Key(&host), NOW),
            Verdict::Trusted
        );
        assert_eq!(
            check(&files, "127.0.0.1", 2223, Presented::Key(&host), NOW),
            Verdict::Unknown
        );
    }

    #[test]
    fn revoked_keys_are_refused_whatever_else_trusts_them() {
        let host = key(HOST);
        let files = file(&format!("* {HOST}\n@revoked * {HOST}\n"));
        assert_eq!(
            check(&files, "h", 22, Presented::Key(&host), NOW),
            Verdict::Revoked {
                file: PathBuf::from("/kh"),
                line: 2
            }
        );
        let files = file(&format!("@cert-authority * {CA}\n@revoked * {CA}\n"));
        assert!(matches!(
            check(
                &files,
                "git.example",
                22,
                Presented::Certificate(&cert(HOST_CERT)),
                NOW
            ),
            Verdict::Revoked { line: 2, .. }
        ));
    }

    #[test]
    fn host_certificates_from_a_listed_ca() {
        let files = file(&format!("@cert-authority *.example {CA}\n"));
        let at = |c: &str, host: &str, now: u64| {
            check(&files, host, 22, Presented::Certificate(&cert(c)), now)
        };
        assert_eq!(at(HOST_CERT, "git.example", NOW), Verdict::Trusted);
        let problem = |v: Verdict| match v {
            Verdict::BadCertificate { reason } => reason,
            other => panic!("expected a bad certificate, got {other:?}"),
        };
        assert!(problem(at(HOST_CERT, "other.example", NOW)).contains("principals: git.example"));
        assert!(problem(at(EXPIRED, "git.example", NOW)).contains("expired"));
        assert!(problem(at(HOST_CERT, "git.example", 1_000_000_000)).contains("not valid yet"));
        assert!(problem(at(USER_CERT, "git.example", NOW)).contains("user certificate"));
        assert_eq!(
            at(BY_OTHER_CA, "git.example", NOW),
            Verdict::Unknown,
            "an unlisted CA: the plain key inside is unknown"
        );
        assert_eq!(
            at(HOST_CERT, "git.other", NOW),
            Verdict::Unknown,
            "the CA is listed for *.example only"
        );
    }

    #[test]
    fn a_certificate_from_an_unlisted_ca_falls_back_to_its_plain_key() {
        let files = file(&format!("git.example {HOST}\n"));
        assert_eq!(
            check(
                &files,
                "git.example",
                22,
                Presented::Certificate(&cert(BY_OTHER_CA)),
                NOW
            ),
            Verdict::Trusted
        );
    }

    #[test]
    fn a_tampered_certificate_does_not_verify() {
        let files = file(&format!("@cert-authority * {CA}\n"));
        // BY_OTHER_CA's body with CA's key put in as the signer.
        let mut tampered = cert(BY_OTHER_CA);
        let ca = key(CA);
        let mut bytes = tampered.to_bytes().expect("because it encodes");
        let other = key(OTHER_CA).key_data().ed25519().expect("ed25519").0;
        let pos = bytes
            .windows(32)
            .position(|w| w == other)
            .expect("because the signer's key is in the certificate");
        bytes[pos..pos + 32].copy_from_slice(&ca.key_data().ed25519().expect("ed25519").0);
        tampered = Certificate::from_bytes(&bytes).expect("because it still parses");
        let verdict = check(
            &files,
            "git.example",
            22,
            Presented::Certificate(&tampered),
            NOW,
        );
        assert!(
            matches!(&verdict, Verdict::BadCertificate { reason } if reason.contains("signature")),
            "{verdict:?}"
        );
    }

    #[test]
    fn markers_and_junk() {
        let files = file(&format!(
            "@cert-authority *.example {CA}\n@bogus * {CA}\n@revoked\nonly-a-name\n* not-a-key AAAA\n"
        ));
        assert_eq!(files[0].entries.len(), 1);
        assert!(has_authority_for(&files, "git.example", 22));
        assert!(!has_authority_for(&files, "git.other", 22));
    }

    #[test]
    fn base64_round_trip() {
        assert_eq!(base64_decode("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(base64_decode("a*"), None);
    }
}
