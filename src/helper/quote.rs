//! git's C-style quoting, as `quote_c_style` writes it and
//! `unquote_c_style` reads it (git's quote.c).
//!
//! git quotes the value of every non-boolean `option` it sends a helper
//! (transport-helper.c, `set_helper_option`) when the value holds a byte
//! that needs it: a control character, `"`, `\`, DEL, and, with the default
//! `core.quotePath=true`, every byte from 0x80 up. A quoted value is wrapped
//! in double quotes; one that needs nothing arrives as it is.

use crate::wire::shorten;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("expected a C-quoted string ending in '\"', got {found:?}")]
    Unterminated { found: String },
    #[error(
        "expected \\a, \\b, \\f, \\n, \\r, \\t, \\v, \\\\, \\\" or three octal digits \
         (the first 0-3) after '\\' in {found:?}"
    )]
    BadEscape { found: String },
    #[error("expected nothing after the closing '\"' of {found:?}")]
    TrailingText { found: String },
}

/// Reads the C-quoted string at the start of `quoted` (which must begin
/// with `"`) up to its closing quote; returns the bytes it stands for and
/// what follows the closing quote.
pub fn unquote_c_style(quoted: &[u8]) -> Result<(Vec<u8>, &[u8]), Error> {
    let unterminated = || Error::Unterminated {
        found: shorten(quoted),
    };
    let bad_escape = || Error::BadEscape {
        found: shorten(quoted),
    };
    let mut rest = quoted.strip_prefix(b"\"").ok_or_else(unterminated)?;
    let mut out = Vec::with_capacity(rest.len());
    loop {
        let (&byte, after) = rest.split_first().ok_or_else(unterminated)?;
        rest = after;
        match byte {
            b'"' => return Ok((out, rest)),
            b'\\' => {
                let (&escape, after) = rest.split_first().ok_or_else(unterminated)?;
                rest = after;
                let byte = match escape {
                    b'a' => 0x07,
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'v' => 0x0b,
                    b'\\' | b'"' => escape,
                    // Three octal digits; git refuses a first digit over 3,
                    // which would not fit a byte.
                    b'0'..=b'3' => {
                        let [second @ b'0'..=b'7', third @ b'0'..=b'7', ..] = *rest else {
                            return Err(bad_escape());
                        };
                        rest = &rest[2..];
                        ((escape - b'0') << 6) | ((second - b'0') << 3) | (third - b'0')
                    }
                    _ => return Err(bad_escape()),
                };
                out.push(byte);
            }
            other => out.push(other),
        }
    }
}

/// An `option` value as git sends it: C-quoted when it starts with `"`,
/// verbatim otherwise, as git's own remote-curl.c reads `push-option` and
/// `cas`. A quoted value is the whole value: nothing may follow it.
pub fn option_value(raw: &str) -> Result<Vec<u8>, Error> {
    let raw = raw.as_bytes();
    if !raw.starts_with(b"\"") {
        return Ok(raw.to_vec());
    }
    match unquote_c_style(raw)? {
        (value, []) => Ok(value),
        _ => Err(Error::TrailingText {
            found: shorten(raw),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `option push-option` value git 2.47.3 sent a helper for
    /// `git push -o 'a "b" ü<TAB>t\z'`.
    const RECORDED: &[u8] = br#""a \"b\" \303\274\tt\\z""#;

    #[test]
    fn unquotes_a_value_recorded_from_git() {
        let (value, rest) = unquote_c_style(RECORDED).expect("valid");
        assert_eq!(value, "a \"b\" ü\tt\\z".as_bytes());
        assert_eq!(rest, b"");
    }

    #[test]
    fn unquotes_every_escape_git_writes() {
        let cases: [(&[u8], &[u8]); 8] = [
            (br#""""#, b""),
            (br#""\a\b\f\n\r\t\v""#, b"\x07\x08\x0c\n\r\t\x0b"),
            (br#""\\\"""#, br#"\""#),
            (br#""x\177y""#, b"x\x7fy"),
            (br#""\000\001\377""#, b"\x00\x01\xff"),
            (br#""\303\274""#, "ü".as_bytes()),
            (br#""\"q""#, br#""q"#),
            (br#""plain spaces""#, b"plain spaces"),
        ];
        for (quoted, expected) in cases {
            let (value, rest) = unquote_c_style(quoted).expect("valid");
            assert_eq!(value, expected, "{}", String::from_utf8_lossy(quoted));
            assert_eq!(rest, b"");
        }
    }

    #[test]
    fn returns_what_follows_the_closing_quote() {
        let (value, rest) = unquote_c_style(br#""a b" tail"#).expect("valid");
        assert_eq!((value.as_slice(), rest), (&b"a b"[..], &b" tail"[..]));
    }

    #[test]
    fn refuses_what_git_refuses_quoting_the_input() {
        let cases: [(&[u8], &str); 7] = [
            (b"no quote", "ending in"),
            (br#""open"#, "ending in"),
            (br#""ends in escape\"#, "ending in"),
            (br#""\q""#, r"after '\'"),
            (br#""\400""#, r"after '\'"),
            (br#""\18""#, r"after '\'"),
            (br#""\1""#, r"after '\'"),
        ];
        for (quoted, expected) in cases {
            let err = unquote_c_style(quoted).expect_err("invalid");
            assert!(err.to_string().contains(expected), "{err}");
            assert!(
                err.to_string()
                    .contains(&format!("{:?}", String::from_utf8_lossy(quoted))),
                "{err}"
            );
        }
    }

    #[test]
    fn option_values_are_unquoted_only_when_quoted() {
        assert_eq!(option_value("a b c"), Ok(b"a b c".to_vec()));
        assert_eq!(option_value("ü"), Ok("ü".as_bytes().to_vec()));
        assert_eq!(
            option_value(std::str::from_utf8(RECORDED).expect("ASCII")),
            Ok("a \"b\" ü\tt\\z".as_bytes().to_vec())
        );
        assert!(matches!(
            option_value(r#""a"b"#),
            Err(Error::TrailingText { .. })
        ));
    }
}
