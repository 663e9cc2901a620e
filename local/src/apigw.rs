//! API Gateway REST API proxy integration, payload v1: the event it hands a
//! function and the response it expects back.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Result};
use serde_json::{json, Map, Value};

use crate::ACCOUNT;

pub const STAGE: &str = "v1";
pub const API_ID: &str = "local";

/// An HTTP request as API Gateway received it, matched to a route.
#[derive(Debug, Clone, Default)]
pub struct ProxyRequest {
    pub method: String,
    /// The path as requested, without the stage (`/uploads/upl_…`).
    pub path: String,
    /// The route template that matched (`/uploads/{upload_id}`).
    pub resource: String,
    pub path_parameters: BTreeMap<String, String>,
    /// Header names as sent; repeated headers keep every value.
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub source_ip: String,
    pub request_id: String,
}

fn multi(pairs: &[(String, String)], fold_case: bool) -> (Value, Value) {
    let mut single = Map::new();
    let mut many: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (k, v) in pairs {
        let k = if fold_case { k.to_ascii_lowercase() } else { k.clone() };
        single.insert(k.clone(), Value::String(v.clone()));
        many.entry(k).or_default().push(Value::String(v.clone()));
    }
    if single.is_empty() {
        return (Value::Null, Value::Null);
    }
    (Value::Object(single), json!(many))
}

/// The proxy event API Gateway builds for `req`.
pub fn rest_event(req: &ProxyRequest) -> Value {
    let (headers, multi_headers) = multi(&req.headers, false);
    let (query, multi_query) = multi(&req.query, false);
    let header = |name: &str| req.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    let (body, is_base64) = match &req.body {
        None => (Value::Null, false),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => (Value::String(text.to_owned()), false),
            Err(_) => (Value::String(base64(bytes)), true),
        },
    };
    let path_parameters = if req.path_parameters.is_empty() { Value::Null } else { json!(req.path_parameters) };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default();
    json!({
        "resource": req.resource,
        "path": req.path,
        "httpMethod": req.method,
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": path_parameters,
        "stageVariables": null,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": API_ID,
            "resourceId": "local",
            "resourcePath": req.resource,
            "httpMethod": req.method,
            "extendedRequestId": req.request_id,
            "requestId": req.request_id,
            "path": format!("/{STAGE}{}", req.path),
            "stage": STAGE,
            "protocol": "HTTP/1.1",
            "requestTimeEpoch": now,
            "domainName": header("host").unwrap_or_else(|| "127.0.0.1".to_owned()),
            "identity": {
                "sourceIp": req.source_ip,
                "userAgent": header("user-agent"),
                "accountId": null, "apiKey": null, "apiKeyId": null, "caller": null,
                "cognitoAuthenticationProvider": null, "cognitoAuthenticationType": null,
                "cognitoIdentityId": null, "cognitoIdentityPoolId": null,
                "principalOrgId": null, "user": null, "userArn": null
            }
        },
        "body": body,
        "isBase64Encoded": is_base64
    })
}

/// A function's proxy response: status, headers, body bytes.
#[derive(Debug, Clone)]
pub struct ProxyResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ProxyResponse {
    pub fn json(&self) -> Result<Value> {
        Ok(serde_json::from_slice(&self.body)?)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

pub fn parse_response(v: &Value) -> Result<ProxyResponse> {
    let status = v
        .get("statusCode")
        .and_then(Value::as_u64)
        .ok_or_else(|| anyhow!("function response has no statusCode: {v}"))? as u16;
    let mut headers = Vec::new();
    if let Some(Value::Object(m)) = v.get("multiValueHeaders") {
        for (k, vals) in m {
            for val in vals.as_array().into_iter().flatten() {
                headers.push((k.clone(), val.as_str().unwrap_or_default().to_owned()));
            }
        }
    }
    if let Some(Value::Object(m)) = v.get("headers") {
        for (k, val) in m {
            if !headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(k)) {
                headers.push((k.clone(), val.as_str().unwrap_or_default().to_owned()));
            }
        }
    }
    let text = v.get("body").and_then(Value::as_str).unwrap_or_default();
    let body = if v.get("isBase64Encoded").and_then(Value::as_bool).unwrap_or(false) {
        unbase64(text).ok_or_else(|| anyhow!("function response body is not valid base64"))?
    } else {
        text.as_bytes().to_vec()
    };
    Ok(ProxyResponse { status, headers, body })
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unbase64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = B64.iter().position(|x| *x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", &[0xff, 0x00, 0x80, 0x7f]] {
            assert_eq!(unbase64(&base64(data)).as_deref(), Some(data));
        }
        assert_eq!(base64(b"foob"), "Zm9vYg==");
    }
}
