//! Text from servers, made safe to print on a terminal.
//!
//! Ref names, `ng` reasons and progress lines come from servers that
//! Kalandra does not control. Printed raw, an escape sequence could rewrite
//! the screen, and a line feed in a ref name could fake a whole output line
//! (`created refs/heads/...`). git quotes such names (`quote_c_style`);
//! Kalandra does the same for every control character.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` with each control character written as a C-style escape: `\n`,
/// `\t`, `\r`, `\e`, `\\` when it stands beside one, or `\xNN` (C1
/// controls as `\u{NN}`). Text without control characters is returned as is.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x1b' => out.push_str("\\e"),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x80 && c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_untouched() {
        assert!(matches!(escape("refs/heads/main ü"), Cow::Borrowed(_)));
        assert_eq!(escape("a\\b"), "a\\b", "a lone backslash needs no escape");
    }

    #[test]
    fn control_characters_are_escaped_so_no_line_can_be_faked() {
        assert_eq!(
            escape("refs/heads/x\ncreated  refs/heads/evil"),
            "refs/heads/x\\ncreated  refs/heads/evil"
        );
        assert_eq!(
            escape("\x1b[2J\x07\t\r\u{9b}\\"),
            "\\e[2J\\x07\\t\\r\\u{9b}\\\\"
        );
    }
}
