//! What a smart-HTTP server sends back, checked on bytes: the content type
//! that tells smart from dumb HTTP, and the `# service=` preamble of the ref
//! advertisement.

/// The advertisement or a response is not what a smart-HTTP server sends.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("the server answered with content type {found:?}, not {expected:?}: it is not a smart-HTTP git server (dumb HTTP is not supported)")]
    ContentType { expected: String, found: String },
    #[error("malformed `# service=` preamble in the ref advertisement: {0}")]
    Preamble(String),
}

/// `application/x-git-upload-pack-advertisement` and friends.
pub fn content_type(service: &str, what: &str) -> String {
    format!("application/x-{service}-{what}")
}

/// Checks a `Content-Type` header against the expected media type; any
/// parameters (`; charset=...`) are ignored. A dumb server serves
/// `info/refs` as `text/plain`, and must not be read as if it were smart.
pub fn check_content_type(header: Option<&[u8]>, expected: &str) -> Result<(), Error> {
    let found = header
        .map(|h| String::from_utf8_lossy(h).into_owned())
        .unwrap_or_default();
    let media = found.split(';').next().unwrap_or_default().trim();
    if media.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(Error::ContentType {
            expected: expected.to_owned(),
            found,
        })
    }
}

/// Strips the `# service=<service>` pkt-line and the flush after it.
///
/// Servers disagree: git's http-backend sends it for v0 only, GitHub sends
/// it for v2 as well, and JGit never for v2. Stripped, the body is exactly
/// what the service writes first over a direct connection.
pub fn strip_service_preamble<'a>(body: &'a [u8], service: &str) -> Result<&'a [u8], Error> {
    const PREFIX: &[u8] = b"# service=";
    let Some(len_hex) = body.get(..4) else {
        return Ok(body);
    };
    let Some(len) = std::str::from_utf8(len_hex)
        .ok()
        .and_then(|h| usize::from_str_radix(h, 16).ok())
    else {
        return Ok(body);
    };
    if len < 4 + PREFIX.len() || body.get(4..4 + PREFIX.len()) != Some(PREFIX) {
        return Ok(body);
    }
    let line = body
        .get(4 + PREFIX.len()..len)
        .ok_or_else(|| Error::Preamble("truncated".into()))?;
    let named = line.strip_suffix(b"\n").unwrap_or(line);
    if named != service.as_bytes() {
        return Err(Error::Preamble(format!(
            "it names {:?}, not {service:?}",
            String::from_utf8_lossy(named)
        )));
    }
    let rest = &body[len..];
    // git's remote-curl tolerates the flush being absent.
    Ok(rest.strip_prefix(b"0000").unwrap_or(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V0: &[u8] = b"001e# service=git-upload-pack\n0000003fabc HEAD\0caps\n0000";

    #[test]
    fn strips_the_preamble_and_its_flush() {
        let rest = strip_service_preamble(V0, "git-upload-pack").expect("valid");
        assert_eq!(rest, b"003fabc HEAD\0caps\n0000");
    }

    #[test]
    fn leaves_a_v2_advertisement_without_preamble_alone() {
        let body = b"000eversion 2\n0013agent=git/2.45\n0000";
        assert_eq!(
            strip_service_preamble(body, "git-upload-pack").expect("valid"),
            body
        );
    }

    #[test]
    fn strips_githubs_preamble_before_v2() {
        let body = b"001e# service=git-upload-pack\n0000000eversion 2\n0000";
        assert_eq!(
            strip_service_preamble(body, "git-upload-pack").expect("valid"),
            b"000eversion 2\n0000"
        );
    }

    #[test]
    fn refuses_a_preamble_for_another_service() {
        let body = b"001f# service=git-receive-pack\n0000";
        assert!(matches!(
            strip_service_preamble(body, "git-upload-pack"),
            Err(Error::Preamble(_))
        ));
    }

    #[test]
    fn refuses_a_truncated_preamble() {
        assert!(strip_service_preamble(b"001e# service=git-up", "git-upload-pack").is_err());
    }

    #[test]
    fn short_and_empty_bodies_pass_through() {
        assert_eq!(strip_service_preamble(b"", "x").expect("valid"), b"");
        assert_eq!(strip_service_preamble(b"00", "x").expect("valid"), b"00");
    }

    #[test]
    fn content_type_ignores_parameters_and_case() {
        let expected = content_type("git-upload-pack", "advertisement");
        assert_eq!(expected, "application/x-git-upload-pack-advertisement");
        check_content_type(
            Some(b"Application/X-Git-Upload-Pack-Advertisement; charset=utf-8"),
            &expected,
        )
        .expect("matches");
    }

    #[test]
    fn dumb_http_is_refused_by_content_type() {
        let expected = content_type("git-upload-pack", "advertisement");
        let err = check_content_type(Some(b"text/plain"), &expected).expect_err("dumb");
        assert!(err.to_string().contains("dumb HTTP"), "{err}");
        assert!(check_content_type(None, &expected).is_err());
    }
}
