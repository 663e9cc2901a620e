//! What clients see of sessions: the JSON shapes shared by create, get,
//! list, confirm and resume.

use serde_json::{json, Value};

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
pub fn session(s: &Session) -> Value {
    let mut view = listed(&Listed::from(s));
    if let Some(c) = &s.checksums {
        let kind = s.checksum_type();
        view["checksum"] = json!({
            "algorithm": c.algorithm().as_str(),
            "type": kind.as_str(),
            "value": c.object_value(kind),
            "part_size": s.multipart.as_ref().map_or(s.size, |m| m.part_size),
        });
    }
    view
}

/// A session as clients see it, from what a list reads.
pub fn listed(s: &Listed) -> Value {
    json!({
        "upload_id": s.id.as_str(),
        "status": s.status.as_str(),
        "filename": s.filename,
        "content_type": s.content_type,
        "size": s.size,
        "created_at": s.created_at.to_rfc3339(),
        "expires_at": (s.status == Status::Pending).then(|| s.expires_at.to_rfc3339()),
        "completed_at": s.completed_at.map(Timestamp::to_rfc3339),
    })
}

/// How the session's bytes travel: `single` or `multipart`, part size and
/// count.
pub fn transfer(s: &Session) -> Value {
    match &s.multipart {
        None => json!({ "type": "single", "part_size": s.size, "part_count": 1 }),
        Some(mp) => json!({ "type": "multipart", "part_size": mp.part_size, "part_count": mp.part_count }),
    }
}

/// The part numbers of `s`, with each part's size.
pub fn parts(s: &Session) -> impl Iterator<Item = (u32, u64)> + '_ {
    let (part_size, count) = s.multipart.as_ref().map(|m| (m.part_size, m.part_count)).unwrap_or((s.size, 1));
    (1..=count).map(move |n| (n, part_len(s.size, part_size, n)))
}

/// Where the bytes of completed session `s` can be read back: a presigned
/// `GET` that lives as long as the upload URLs (`PRESIGNED_URL_TTL_SECONDS`)
/// and answers with the upload's content type and
/// `Content-Disposition: attachment` naming its filename. Signed locally:
/// no call to S3.
pub async fn download(objects: &Objects, bucket: &str, s: &Session, policy: &UploadPolicy) -> Result<Value, Error> {
    let window = objects.url_window(policy.url_ttl_seconds).await?;
    let get = objects.presign_get(bucket, &s.object_key, &s.filename, &s.content_type, &window).await?;
    Ok(json!({ "url": get.url, "method": "GET", "expires_at": get.expires_at.to_rfc3339() }))
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
) -> Result<Value, Error> {
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
    let mut out = transfer(s);
    let map = out.as_object_mut().expect("transfer is an object");
    map.insert("urls_expire_at".into(), json!(urls_expire_at.to_rfc3339()));
    map.insert("parts".into(), serde_json::to_value(&puts).map_err(Error::internal("encode parts"))?);
    map.insert("more_parts".into(), json!(missing.len() > MAX_URLS_PER_RESPONSE));
    Ok(out)
}
