//! Identifier and display-name rules shared by the HTTP API and the wire protocol.

/// Longest accepted `roomId`/`userId`.
pub const MAX_ID_LEN: usize = 128;
/// Longest accepted display name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// True for 1–128 characters of `[A-Za-z0-9._:@-]`.
pub fn is_valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'))
}

/// Trims a display name and checks it: 1–100 printable characters, or `None`.
pub fn display_name(raw: &str) -> Option<String> {
    let name = raw.trim();
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && !name.chars().any(char::is_control);
    ok.then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_allowed_alphabet_and_length() {
        assert!(is_valid_id("room-1_a.b:c@d"));
        assert!(is_valid_id(&"a".repeat(128)));
        assert!(!is_valid_id(&"a".repeat(129)));
        assert!(!is_valid_id(""));
        for bad in ["a b", "a/b", "ä", "a\n", "a\"b", "<x>"] {
            assert!(!is_valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(display_name("  Ada  ").as_deref(), Some("Ada"));
        assert_eq!(display_name("Ünïcödé ✓").as_deref(), Some("Ünïcödé ✓"));
        assert_eq!(display_name("   "), None);
        assert_eq!(display_name("a\u{0}b"), None);
        assert!(display_name(&"é".repeat(100)).is_some());
        assert_eq!(display_name(&"é".repeat(101)), None);
    }
}
