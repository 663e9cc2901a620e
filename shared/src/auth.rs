//! Who is calling and what they may do: an owner's API key reaches all of
//! that owner's uploads; a browser token the key minted reaches what its
//! scope and limits allow (see [`BrowserToken`]).
//!
//! A token costs no store call of its own: its signature and expiry are
//! checked in memory (the token secret is read once per instance), then the
//! minting key's item is read in the call a key's request makes anyway
//! (revoking the key ends its tokens), while the key's counter is bumped
//! beside it (one `UpdateItem`, concurrent with the read).

use tracing::Span;

use crate::domain::{content_type_admits, ApiKey, BrowserToken, KeyDigest, NewUpload, OwnerId, Session, TokenId};
use crate::domain::{Timestamp, TokenRefusal, TokenScope, UploadId};
use crate::error::Error;
use crate::store::{Secret, Store};

/// A credential as presented, not yet checked against anything.
#[derive(Debug, Clone)]
pub enum Credential {
    /// An owner's API key (`x-api-key`, or `Authorization: Bearer usk_…`).
    Key(ApiKey),
    /// A browser token (`Authorization: Bearer ubt_…`), still unverified.
    Token(String),
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub owner: OwnerId,
    /// The token it presented; `None` for the owner's key.
    pub token: Option<BrowserToken>,
}

/// Refusals of a valid token asked for what it does not cover (403).
pub const OUT_OF_SCOPE: &str = "Upload is outside the token's scope";
pub const NO_LISTING: &str = "Token does not allow listing";
pub const NO_CREATING: &str = "Token does not allow creating uploads";
pub const TOO_LARGE: &str = "Upload larger than the token allows";
pub const WRONG_CONTENT_TYPE: &str = "Content type not allowed by the token";
pub const NO_MINTING: &str = "Tokens cannot mint tokens";

impl Caller {
    /// The token to record on a session it creates.
    pub fn token_id(&self) -> Option<TokenId> {
        self.token.as_ref().map(|t| t.id.clone())
    }

    /// May create `new`: a token bound to one upload may not, and a token's
    /// size and content type limits hold.
    pub fn may_create(&self, new: &NewUpload) -> Result<(), Error> {
        let Some(token) = &self.token else { return Ok(()) };
        if token.upload_id.is_some() {
            return Err(Error::Forbidden(NO_CREATING));
        }
        if token.max_size.is_some_and(|max| new.size > max) {
            return Err(Error::Forbidden(TOO_LARGE));
        }
        if token.content_type.as_deref().is_some_and(|t| !content_type_admits(t, &new.content_type)) {
            return Err(Error::Forbidden(WRONG_CONTENT_TYPE));
        }
        Ok(())
    }

    /// May list the owner's uploads: the key, or a token of scope `owner`
    /// not bound to one upload.
    pub fn may_list(&self) -> Result<(), Error> {
        match &self.token {
            Some(t) if t.scope != TokenScope::Owner || t.upload_id.is_some() => Err(Error::Forbidden(NO_LISTING)),
            _ => Ok(()),
        }
    }

    /// May act on `session`, one of the owner's.
    pub fn may_reach(&self, session: &Session) -> Result<(), Error> {
        match &self.token {
            Some(t) if !t.covers(session) => Err(Error::Forbidden(OUT_OF_SCOPE)),
            _ => Ok(()),
        }
    }

    /// May mint tokens: only a key.
    pub fn may_mint(&self) -> Result<(), Error> {
        match self.token {
            Some(_) => Err(Error::Forbidden(NO_MINTING)),
            None => Ok(()),
        }
    }
}

/// The key digest a credential stands for, and the token if it is one:
/// a token's signature and expiry are checked here (401 otherwise).
async fn verify(store: &Store, credential: &Credential) -> Result<(KeyDigest, Option<BrowserToken>), Error> {
    match credential {
        Credential::Key(key) => Ok((key.digest(), None)),
        Credential::Token(raw) => {
            // Read once per instance; created by the first mint, or by the
            // first token presented before any (which it then refuses), so
            // junk tokens never cost a read each.
            let secret = store.secret(Secret::Token).await?;
            let token = BrowserToken::verify(raw, secret, Timestamp::now()).map_err(|r| match r {
                TokenRefusal::Invalid => Error::InvalidToken,
                TokenRefusal::Expired => Error::TokenExpired,
            })?;
            Span::current().record("token_id", token.id.as_str());
            Ok((token.key.clone(), Some(token)))
        }
    }
}

/// A token's request counted against its key, beside `read`; the read's
/// refusal (an unknown or revoked key) comes first.
async fn counted<T>(
    store: &Store,
    token: &Option<BrowserToken>,
    read: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match token {
        None => read.await,
        Some(t) => {
            let (read, count) = tokio::join!(read, store.count_token_request(&t.key, Timestamp::now()));
            let read = read?;
            count?;
            Ok(read)
        }
    }
}

fn known(owner: Option<OwnerId>) -> Result<OwnerId, Error> {
    let owner = owner.ok_or(Error::Unauthorized)?;
    Span::current().record("owner", owner.as_str());
    Ok(owner)
}

/// Resolves a credential to its caller: an unknown or revoked key is
/// `Unauthorized`, a bad or expired token `InvalidToken` or `TokenExpired`.
pub async fn authenticate(store: &Store, credential: &Credential) -> Result<Caller, Error> {
    let (digest, token) = verify(store, credential).await?;
    let owner = known(counted(store, &token, store.resolve_key_digest(&digest)).await?)?;
    Ok(Caller { owner, token })
}

/// [`authenticate`], reading the owner's session `id` in the same store
/// call (`None` when it is missing or another owner's). Whether the caller
/// may reach the session is [`Caller::may_reach`]'s to say.
pub async fn authenticate_for(
    store: &Store,
    credential: &Credential,
    id: &UploadId,
) -> Result<(Caller, Option<Session>), Error> {
    let (digest, token) = verify(store, credential).await?;
    let (owner, session) = counted(store, &token, store.caller_and_session(&digest, id)).await?;
    Ok((Caller { owner: known(owner)?, token }, session))
}
