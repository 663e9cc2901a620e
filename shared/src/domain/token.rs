//! Browser tokens: short-lived, narrowly scoped grants an owner's key mints
//! for a browser (`POST /tokens`), sent as `Authorization: Bearer ubt_…`.
//!
//! A token is verified without storage: `ubt_` base64url(claims) `.`
//! base64url(HMAC-SHA256(secret, "ubt1\n" claims)), the secret being 32
//! random bytes kept in the table (`CONFIG`/`TOKEN_SECRET`, like the list
//! cursors' own). Why not a stored digest, as API keys are: a token lives
//! minutes, is minted per page load and would leave an item per mint; its
//! claims (scope, limits, expiry) travel in it, so checking one costs no
//! store call beyond the ones a key's request makes anyway. What it gives
//! up, revoking one token alone, is covered by its short life and by what
//! stays stored: each request still reads the minting key's item (in the
//! same call a key's request makes), so revoking the key ends every token
//! it minted at once; replacing the secret ends them all.
//!
//! The claims name the minting key by its digest (the table's key for it:
//! not the key, and no way back to it), so the request reads that key and
//! counts the token's request against that key's allowance.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{hex, random_bytes, valid_content_type, KeyDigest, Session, Timestamp, UploadId};

/// The shortest, default and longest lifetimes a token may be minted with.
pub const TOKEN_MIN_TTL_SECONDS: i64 = 60;
pub const TOKEN_DEFAULT_TTL_SECONDS: i64 = 900;
pub const TOKEN_MAX_TTL_SECONDS: i64 = 3600;
/// Longer is not a token this service minted: refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 1024;
const PREFIX: &str = api::TOKEN_PREFIX;
/// Domain separation from the other MACs a secret could key.
const MAC_CONTEXT: &[u8] = b"ubt1\n";

/// A token's id, `tok_` and 32 hex digits: recorded on the sessions the
/// token creates, so scope `own` can tell them apart.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenId(String);

impl TokenId {
    pub fn generate() -> Self {
        Self(format!("{}{}", api::TOKEN_ID_PREFIX, hex(&random_bytes::<16>())))
    }

    pub fn parse(input: &str) -> Option<Self> {
        api::is_token_id(input).then(|| Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenId({})", self.0)
    }
}

/// Which of the owner's uploads a token reaches: the API's enum.
pub use api::TokenScope;

/// Why a presented token is refused; both are 401s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    /// Not a token this service minted with its current secret, or altered.
    Invalid,
    /// Minted here, and past its expiry.
    Expired,
}

/// A verified (or freshly minted) token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserToken {
    pub id: TokenId,
    /// The digest of the key that minted it.
    pub key: KeyDigest,
    /// The token is refused from this instant on (whole seconds).
    pub expires_at: Timestamp,
    pub scope: TokenScope,
    /// The largest upload it may create, in bytes.
    pub max_size: Option<u64>,
    /// The content type its uploads must have: a media type, or `type/*`.
    pub content_type: Option<String>,
    /// The one upload it reaches: it can then neither create nor list.
    pub upload_id: Option<UploadId>,
}

/// The wire form of the claims: short names, as they travel in a header.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Claims {
    v: u8,
    k: String,
    t: String,
    e: i64,
    s: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    m: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    u: Option<String>,
}

fn mac(secret: &[u8], claims: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(MAC_CONTEXT);
    mac.update(claims.as_bytes());
    mac
}

/// Whether `token_type` (a token's `content_type` claim: a media type or
/// `type/*`) admits `content_type`: compared on the media type without its
/// parameters, case-insensitively, as RFC 9110 compares them.
pub fn content_type_admits(token_type: &str, content_type: &str) -> bool {
    let essence = |t: &str| t.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let want = essence(token_type);
    let have = essence(content_type);
    match want.strip_suffix("/*") {
        Some(kind) => have.split_once('/').is_some_and(|(k, _)| k == kind),
        None => have == want,
    }
}

/// A token's `content_type` claim as minted: a valid media type, or `type/*`.
pub fn valid_token_content_type(t: &str) -> bool {
    match t.strip_suffix("/*") {
        Some(kind) => kind != "*" && valid_content_type(&format!("{kind}/x")),
        None => valid_content_type(t),
    }
}

impl BrowserToken {
    /// The token's string form, signed with `secret`.
    pub fn encode(&self, secret: &[u8]) -> String {
        let claims = Claims {
            v: 1,
            k: self.key.as_str().to_owned(),
            t: self.id.as_str().to_owned(),
            e: self.expires_at.unix_seconds(),
            s: self.scope.as_str().to_owned(),
            m: self.max_size,
            c: self.content_type.clone(),
            u: self.upload_id.as_ref().map(|u| u.as_str().to_owned()),
        };
        let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialize"));
        let tag = mac(secret, &claims).finalize().into_bytes();
        format!("{PREFIX}{claims}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// Whether `presented` looks like a token at all (and not a key).
    pub fn is_token_shaped(presented: &str) -> bool {
        presented.starts_with(PREFIX)
    }

    /// The claims of `presented` if this service minted it with `secret`
    /// and it has not expired at `now`. The signature is checked before
    /// anything in the claims is believed.
    pub fn verify(presented: &str, secret: &[u8], now: Timestamp) -> Result<Self, TokenRefusal> {
        if presented.len() > MAX_TOKEN_LEN {
            return Err(TokenRefusal::Invalid);
        }
        let body = presented.strip_prefix(PREFIX).ok_or(TokenRefusal::Invalid)?;
        let (claims, tag) = body.split_once('.').ok_or(TokenRefusal::Invalid)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| TokenRefusal::Invalid)?;
        mac(secret, claims).verify_slice(&tag).map_err(|_| TokenRefusal::Invalid)?;
        let bytes = URL_SAFE_NO_PAD.decode(claims).map_err(|_| TokenRefusal::Invalid)?;
        let c: Claims = serde_json::from_slice(&bytes).map_err(|_| TokenRefusal::Invalid)?;
        let token = Self::from_claims(c).ok_or(TokenRefusal::Invalid)?;
        if now >= token.expires_at {
            return Err(TokenRefusal::Expired);
        }
        Ok(token)
    }

    fn from_claims(c: Claims) -> Option<Self> {
        if c.v != 1 {
            return None;
        }
        Some(Self {
            id: TokenId::parse(&c.t)?,
            key: KeyDigest::parse(&c.k)?,
            expires_at: Timestamp::from_unix_millis(c.e.checked_mul(1000)?),
            scope: TokenScope::parse(&c.s)?,
            max_size: c.m,
            content_type: c.c,
            upload_id: match c.u {
                None => None,
                Some(u) => Some(UploadId::parse(&u)?),
            },
        })
    }

    /// Whether the token reaches `session` (already known to be its
    /// owner's): the one upload it names, else every upload for scope
    /// `owner`, else only those it created.
    pub fn covers(&self, session: &Session) -> bool {
        match (&self.upload_id, self.scope) {
            (Some(id), _) => *id == session.id,
            (None, TokenScope::Owner) => true,
            (None, TokenScope::Own) => session.token_id.as_ref() == Some(&self.id),
        }
    }
}

/// What a mint asks for (`POST /tokens`'s body), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub ttl_seconds: i64,
    pub scope: TokenScope,
    pub max_size: Option<u64>,
    pub content_type: Option<String>,
    pub upload_id: Option<UploadId>,
}

impl TokenGrant {
    /// Parses a mint's body (`{}` and an empty body ask for the defaults).
    /// Each failure names the field in a stable message.
    pub fn parse(body: &[u8]) -> Result<Self, crate::Error> {
        use crate::Error;
        use serde_json::Value;
        let value: Value = if body.is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(body).map_err(|_| Error::InvalidBody)?
        };
        let obj = value.as_object().ok_or(Error::InvalidBody)?;
        let ttl_seconds = match obj.get("ttl_seconds") {
            None => TOKEN_DEFAULT_TTL_SECONDS,
            Some(v) => v
                .as_i64()
                .filter(|t| (TOKEN_MIN_TTL_SECONDS..=TOKEN_MAX_TTL_SECONDS).contains(t))
                .ok_or(Error::Invalid("Invalid ttl_seconds"))?,
        };
        let scope = match obj.get("scope") {
            None => TokenScope::Own,
            Some(v) => v.as_str().and_then(TokenScope::parse).ok_or(Error::Invalid("Invalid scope"))?,
        };
        let max_size = match obj.get("max_size") {
            None => None,
            Some(v) => Some(v.as_u64().filter(|m| *m > 0).ok_or(Error::Invalid("Invalid max_size"))?),
        };
        let content_type = match obj.get("content_type") {
            None => None,
            Some(v) => Some(
                v.as_str()
                    .filter(|t| valid_token_content_type(t))
                    .ok_or(Error::Invalid("Invalid content_type"))?
                    .to_owned(),
            ),
        };
        let upload_id = match obj.get("upload_id") {
            None => None,
            Some(v) => Some(v.as_str().and_then(UploadId::parse).ok_or(Error::InvalidUploadId)?),
        };
        Ok(Self { ttl_seconds, scope, max_size, content_type, upload_id })
    }

    /// The token this grant makes for the key with `key`, minted at `now`:
    /// it expires on the whole second `ttl_seconds` after `now`'s.
    pub fn mint(self, key: KeyDigest, now: Timestamp) -> BrowserToken {
        BrowserToken {
            id: TokenId::generate(),
            key,
            expires_at: Timestamp::from_unix_millis((now.unix_seconds() + self.ttl_seconds) * 1000),
            scope: self.scope,
            max_size: self.max_size,
            content_type: self.content_type,
            upload_id: self.upload_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ApiKey;

    fn token() -> BrowserToken {
        BrowserToken {
            id: TokenId::generate(),
            key: ApiKey::generate().digest(),
            expires_at: Timestamp::from_unix_millis(2_000_000_000_000),
            scope: TokenScope::Own,
            max_size: Some(5),
            content_type: Some("image/*".into()),
            upload_id: None,
        }
    }

    #[test]
    fn a_token_verifies_with_its_secret_until_it_expires() {
        let secret = [3u8; 32];
        let t = token();
        let s = t.encode(&secret);
        assert!(s.starts_with("ubt_") && s.len() < MAX_TOKEN_LEN, "{s}");
        let just_before = Timestamp::from_unix_millis(t.expires_at.unix_millis() - 1);
        assert_eq!(BrowserToken::verify(&s, &secret, just_before), Ok(t.clone()));
        assert_eq!(BrowserToken::verify(&s, &secret, t.expires_at), Err(TokenRefusal::Expired));
        assert_eq!(BrowserToken::verify(&s, &[4u8; 32], just_before), Err(TokenRefusal::Invalid));
    }

    #[test]
    fn any_altered_byte_is_refused() {
        let secret = [3u8; 32];
        let s = token().encode(&secret);
        let now = Timestamp::from_unix_millis(0);
        for i in 4..s.len() {
            let mut bytes = s.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(bytes).unwrap();
            if altered != s {
                assert_eq!(BrowserToken::verify(&altered, &secret, now), Err(TokenRefusal::Invalid), "byte {i}");
            }
        }
        for junk in ["", "ubt_", "ubt_.", "ubt_a.b", &format!("ubt_{}", "a".repeat(MAX_TOKEN_LEN))] {
            assert_eq!(BrowserToken::verify(junk, &secret, now), Err(TokenRefusal::Invalid), "{junk:?}");
        }
    }

    #[test]
    fn grants_take_defaults_and_refuse_each_bad_field_by_name() {
        let g = TokenGrant::parse(b"").unwrap();
        assert_eq!((g.ttl_seconds, g.scope, g.max_size.is_none()), (900, TokenScope::Own, true));
        let g =
            TokenGrant::parse(br#"{"ttl_seconds":60,"scope":"owner","max_size":7,"content_type":"image/*"}"#).unwrap();
        assert_eq!(
            (g.ttl_seconds, g.scope, g.max_size, g.content_type.as_deref()),
            (60, TokenScope::Owner, Some(7), Some("image/*"))
        );
        for (body, message) in [
            (r#"{"ttl_seconds":59}"#, "Invalid ttl_seconds"),
            (r#"{"ttl_seconds":3601}"#, "Invalid ttl_seconds"),
            (r#"{"ttl_seconds":"900"}"#, "Invalid ttl_seconds"),
            (r#"{"scope":"all"}"#, "Invalid scope"),
            (r#"{"max_size":0}"#, "Invalid max_size"),
            (r#"{"max_size":-1}"#, "Invalid max_size"),
            (r#"{"content_type":"*/*"}"#, "Invalid content_type"),
            (r#"{"upload_id":"x"}"#, "Invalid upload id"),
            ("[]", "Invalid JSON body"),
            ("{", "Invalid JSON body"),
        ] {
            assert_eq!(TokenGrant::parse(body.as_bytes()).unwrap_err().to_string(), message, "{body}");
        }
    }

    /// What the API's request type writes, the parser takes as written.
    #[test]
    fn the_api_mint_body_parses() {
        let body = api::MintToken {
            ttl_seconds: Some(60),
            scope: Some(TokenScope::Owner),
            max_size: Some(7),
            content_type: Some("image/*".into()),
            upload_id: Some("3F2A9C4E-8B1D-4F6A-9E0C-7B5D2A1F8E36".into()),
        };
        let g = TokenGrant::parse(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(
            (g.ttl_seconds, g.scope, g.max_size, g.content_type.as_deref()),
            (60, TokenScope::Owner, Some(7), Some("image/*"))
        );
        assert_eq!(g.upload_id.map(|u| u.as_str().to_owned()).as_deref(), Some("upl_3f2a9c4e8b1d4f6a9e0c7b5d2a1f8e36"));
        let defaults = TokenGrant::parse(&serde_json::to_vec(&api::MintToken::default()).unwrap()).unwrap();
        assert_eq!((defaults.ttl_seconds, defaults.scope), (TOKEN_DEFAULT_TTL_SECONDS, TokenScope::Own));
    }

    #[test]
    fn a_minted_token_expires_on_a_whole_second() {
        let g = TokenGrant::parse(br#"{"ttl_seconds":60}"#).unwrap();
        let t = g.mint(ApiKey::generate().digest(), Timestamp::from_unix_millis(1_000_999));
        assert_eq!(t.expires_at.unix_millis(), 1_060_000);
    }

    #[test]
    fn content_types_match_on_their_media_type() {
        assert!(content_type_admits("image/*", "image/png"));
        assert!(content_type_admits("image/*", "IMAGE/PNG; q=1"));
        assert!(!content_type_admits("image/*", "imagex/png"));
        assert!(!content_type_admits("image/*", "text/plain"));
        assert!(content_type_admits("text/plain", "Text/Plain; charset=utf-8"));
        assert!(!content_type_admits("text/plain", "text/plainx"));
        assert!(valid_token_content_type("image/*") && valid_token_content_type("text/plain"));
        assert!(
            !valid_token_content_type("*/*") && !valid_token_content_type("image") && !valid_token_content_type("")
        );
    }
}
