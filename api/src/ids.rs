//! The ids' string forms. `shared`'s domain newtypes (`UploadId`,
//! `OwnerId`, `TokenId`) are built only from strings these accept.

/// An upload id is `upl_` and 32 lowercase hex digits (128 bits).
pub const UPLOAD_ID_PREFIX: &str = "upl_";
/// A browser token's id is `tok_` and 32 lowercase hex digits.
pub const TOKEN_ID_PREFIX: &str = "tok_";
/// A browser token (`Authorization: Bearer ubt_…`).
pub const TOKEN_PREFIX: &str = "ubt_";
/// The longest owner id.
pub const OWNER_ID_MAX_LEN: usize = 64;

fn lower_hex_32(digits: &str) -> bool {
    digits.len() == 32 && digits.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `s` is an upload id in its canonical form, as the API writes it.
pub fn is_upload_id(s: &str) -> bool {
    s.strip_prefix(UPLOAD_ID_PREFIX).is_some_and(lower_hex_32)
}

/// The canonical form of an upload id as the API takes it: the canonical
/// form itself, or the same 128 bits as a hyphenated UUID (`8-4-4-4-12`
/// hex digits, either case). `None` for anything else.
pub fn canonical_upload_id(input: &str) -> Option<String> {
    if input.starts_with(UPLOAD_ID_PREFIX) {
        return is_upload_id(input).then(|| input.to_owned());
    }
    let groups: Vec<&str> = input.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    if groups.len() != lens.len()
        || groups.iter().zip(lens).any(|(g, n)| g.len() != n || !g.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return None;
    }
    Some(format!("{UPLOAD_ID_PREFIX}{}", groups.concat().to_ascii_lowercase()))
}

/// Whether `s` is an owner id: 1 to 64 characters of `[A-Za-z0-9._-]`,
/// starting with a letter or digit.
pub fn is_owner_id(s: &str) -> bool {
    (1..=OWNER_ID_MAX_LEN).contains(&s.len())
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `s` is a token id: `tok_` and 32 lowercase hex digits.
pub fn is_token_id(s: &str) -> bool {
    s.strip_prefix(TOKEN_ID_PREFIX).is_some_and(lower_hex_32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids() {
        let id = "upl_3f2a9c4e8b1d4f6a9e0c7b5d2a1f8e36";
        assert!(is_upload_id(id));
        assert_eq!(canonical_upload_id(id).as_deref(), Some(id));
        assert_eq!(canonical_upload_id("3F2A9C4E-8B1D-4F6A-9E0C-7B5D2A1F8E36").as_deref(), Some(id));
        for bad in ["", "upl_", "upl_3F2A9C4E8B1D4F6A9E0C7B5D2A1F8E36", "../etc", "upl_3f2a9c4e8b1d4f6a9e0c7b5d2a1f8e3"]
        {
            assert_eq!(canonical_upload_id(bad), None, "{bad}");
        }
        assert!(!is_upload_id("3f2a9c4e-8b1d-4f6a-9e0c-7b5d2a1f8e36"));
    }

    #[test]
    fn owners_and_tokens() {
        assert!(is_owner_id("team-a") && is_owner_id("a.b_c-9"));
        for bad in ["", "-a", "a/b", "a b", "ä", &"x".repeat(65)] {
            assert!(!is_owner_id(bad), "{bad:?}");
        }
        assert!(is_token_id("tok_3f2a9c4e8b1d4f6a9e0c7b5d2a1f8e36"));
        assert!(
            !is_token_id("tok_3F2A9C4E8B1D4F6A9E0C7B5D2A1F8E36")
                && !is_token_id("upl_3f2a9c4e8b1d4f6a9e0c7b5d2a1f8e36")
        );
    }
}
