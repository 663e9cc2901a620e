//! What clients see of sessions: the API's views (crate `api`) of a
//! session, as create, get, list, confirm and resume answer them.

pub use api::{Checksum, Download, Page, PresignedPut, Session as SessionView, Transfer};

use crate::config::UploadPolicy;
use crate::domain::{part_len, Listed, Session, Status, Timestamp};
use crate::error::Error;
use crate::objects::{Objects, PutChecksum};

/// At most this many presigned URLs go into one response (a response must
/// stay well under Lambda's 6 MB); the resume route hands out the rest.
pub const MAX_URLS_PER_RESPONSE: usize = 1000;

/// A session as clients see it: what a list shows, and the checksum it was
/// declared with, as S3 reports it for the whole object (`FULL_OBJECT` for
/// a single `PUT`, `COMPOSITE` with its part size for multipart).
pub fn session(s: &Session) -> SessionView {
    let mut view = listed(&Listed::from(s));
    view.checksum = s.checksums.as_ref().map(|c| {
        let kind = s.checksum_type();
        Checksum {
            algorithm: c.algorithm(),
            kind,
            value: c.object_value(kind),
            part_size: s.multipart.as_ref().map_or(s.size, |m| m.part_size),
        }
    });
    view
}

/// A session as clients see it, from what a list reads.
pub fn listed(s: &Listed) -> SessionView {
    SessionView {
        upload_id: s.id.as_str().to_owned(),
        status: s.status,
        filename: s.filename.clone(),
        content_type: s.content_type.clone(),
        size: s.size,
        created_at: s.created_at.to_rfc3339(),
        expires_at: (s.status == Status::Pending).then(|| s.expires_at.to_rfc3339()),
        completed_at: s.completed_at.map(Timestamp::to_rfc3339),
        checksum: None,
        upload: None,
        download: None,
        completion: None,
    }
}

/// How the session's bytes travel: `single` or `multipart`, part size and
/// count.
pub fn transfer(s: &Session) -> Transfer {
    Transfer::plan(s.size, s.multipart.as_ref().map(|mp| (mp.part_size, u64::from(mp.part_count))))
}

/// The part numbers of `s`, with each part's size.
pub fn parts(s: &Session) -> impl Iterator<Item = (u32, u64)> + '_ {
    let (part_size, count) = s.multipart.as_ref().map(|m| (m.part_size, m.part_count)).unwrap_or((s.size, 1));
    (1..=count).map(move |n| (n, part_len(s.size, part_size, n)))
}

/// Part numbers as the API writes them (`parts_received`, `parts_missing`).
pub fn part_numbers(numbers: Vec<u32>) -> Vec<u64> {
    numbers.into_iter().map(u64::from).collect()
}

/// Where the bytes of completed session `s` can be read back: a presigned
/// `GET` that lives as long as the upload URLs (`PRESIGNED_URL_TTL_SECONDS`)
/// and answers with the upload's content type and
/// `Content-Disposition: attachment` naming its filename. Signed locally:
/// no call to S3.
pub async fn download(objects: &Objects, bucket: &str, s: &Session, policy: &UploadPolicy) -> Result<Download, Error> {
    let window = objects.url_window(policy.url_ttl_seconds).await?;
    let get = objects.presign_get(bucket, &s.object_key, &s.filename, &s.content_type, &window).await?;
    Ok(Download { url: get.url, method: api::GetMethod::Get, expires_at: get.expires_at.to_rfc3339() })
}

/// Upload instructions for the `missing` parts of pending session `s`:
/// a presigned `PUT` each (at most [`MAX_URLS_PER_RESPONSE`]), when they
/// expire, and whether more parts remain for the resume route.
pub async fn instructions(
    objects: &Objects,
    bucket: &str,
    s: &Session,
    missing: &[u32],
    policy: &UploadPolicy,
) -> Result<Transfer, Error> {
    // One window for all the URLs: they share their expiry, which is the
    // one reported.
    let window = objects.url_window(policy.url_ttl_seconds).await?;
    let urls_expire_at = window.expires_at();
    let mut puts = Vec::new();
    for &n in missing.iter().take(MAX_URLS_PER_RESPONSE) {
        let size = part_len(s.size, s.multipart.as_ref().map_or(s.size, |m| m.part_size), n);
        let checksum = PutChecksum::of(s.checksums.as_ref(), n);
        let checksum = checksum.as_ref();
        let put = match &s.multipart {
            None => objects.presign_put(bucket, &s.object_key, &s.content_type, s.size, checksum, &window).await?,
            Some(mp) => {
                objects.presign_part(bucket, &s.object_key, &mp.s3_upload_id, n, size, checksum, &window).await?
            }
        };
        puts.push(put);
    }
    Ok(Transfer {
        urls_expire_at: Some(urls_expire_at.to_rfc3339()),
        parts: Some(puts),
        more_parts: Some(missing.len() > MAX_URLS_PER_RESPONSE),
        ..transfer(s)
    })
}
