//! Turning method + headers + query + body bytes into one flat parameter map.
//!
//! Real clients send the same parameters in every shape HTTP allows (see the
//! crate doc); this module hides the shape. Rules:
//! - the query string is read first, then the body; a body parameter
//!   **overrides** a query parameter of the same name, and within one source
//!   the last occurrence wins (as PHP does);
//! - `multipart/*` content types are parsed as multipart; the part named `file`
//!   is kept as raw bytes, every other part as (lossy UTF-8) text;
//! - any other body that starts with `{` and parses as a JSON object is JSON,
//!   whatever the content type says (npm `2captcha` sends JSON as `text/plain`,
//!   axios sends strings as urlencoded); scalar values become strings
//!   (`true`→`1`, `false`→`0`), `null` means absent, arrays and objects keep
//!   their JSON text;
//! - everything else (urlencoded, `text/plain`, no content type) is parsed as
//!   `application/x-www-form-urlencoded`.

use std::collections::HashMap;
use std::future::poll_fn;
use std::pin::Pin;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{FromRequest, Multipart};
use axum::http::{header, request::Parts, Request};

/// Why the body could not be turned into parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Over [`crate::ApiConfig::max_body_bytes`].
    TooLarge,
    /// Unreadable stream, broken multipart, or invalid JSON declared as JSON.
    Malformed,
}

/// The flat view of one request's parameters.
#[derive(Debug, Default, Clone)]
pub(crate) struct Params {
    fields: HashMap<String, String>,
    /// Bytes of the multipart part named `file`, when there was one.
    file: Option<Vec<u8>>,
}

impl Params {
    /// Parameters of the query string alone.
    pub(crate) fn from_query(query: Option<&str>) -> Self {
        let mut p = Params::default();
        if let Some(q) = query {
            p.merge_urlencoded(q.as_bytes());
        }
        p
    }

    /// The trimmed value of `name`; `None` when absent or blank.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// The value of `name` exactly as sent (not trimmed); `None` when absent.
    pub(crate) fn raw(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    pub(crate) fn file(&self) -> Option<&[u8]> {
        self.file.as_deref()
    }

    pub(crate) fn take_file(&mut self) -> Option<Vec<u8>> {
        self.file.take()
    }

    /// `json=1` (or `true`): answer in JSON.
    pub(crate) fn wants_json(&self) -> bool {
        truthy(self.get("json"))
    }

    /// `header_acao=1` (or `true`): add `Access-Control-Allow-Origin: *`.
    pub(crate) fn wants_acao(&self) -> bool {
        truthy(self.get("header_acao"))
    }

    #[cfg(test)]
    pub(crate) fn set(&mut self, name: &str, value: &str) {
        self.fields.insert(name.to_string(), value.to_string());
    }

    fn merge_urlencoded(&mut self, bytes: &[u8]) {
        for (k, v) in form_urlencoded::parse(bytes) {
            self.fields.insert(k.into_owned(), v.into_owned());
        }
    }

    fn merge_json(&mut self, obj: serde_json::Map<String, serde_json::Value>) {
        use serde_json::Value;
        for (k, v) in obj {
            let s = match v {
                Value::Null => continue,
                Value::Bool(b) => (if b { "1" } else { "0" }).to_string(),
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                other @ (Value::Array(_) | Value::Object(_)) => other.to_string(),
            };
            self.fields.insert(k, s);
        }
    }

    /// Merges the body into the query parameters (body wins), choosing the
    /// format from the content type and, failing that, from the first byte.
    pub(crate) async fn merge_body(&mut self, parts: &Parts, body: Bytes) -> Result<(), BodyError> {
        let content_type =
            parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
        let essence = content_type.split(';').next().unwrap_or("").trim().to_string();

        if body.trim_ascii().is_empty() {
            return Ok(());
        }
        if essence.starts_with("multipart/") {
            return self.merge_multipart(parts, body).await;
        }
        let declared_json = essence == "application/json" || essence.ends_with("+json");
        if body.trim_ascii_start().first() == Some(&b'{') {
            match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(serde_json::Value::Object(obj)) => {
                    self.merge_json(obj);
                    return Ok(());
                }
                _ if declared_json => return Err(BodyError::Malformed),
                _ => {}
            }
        } else if declared_json {
            return Err(BodyError::Malformed);
        }
        self.merge_urlencoded(&body);
        Ok(())
    }

    async fn merge_multipart(&mut self, parts: &Parts, body: Bytes) -> Result<(), BodyError> {
        let mut req = Request::new(Body::from(body));
        *req.headers_mut() = parts.headers.clone();
        let mut mp = Multipart::from_request(req, &()).await.map_err(|_| BodyError::Malformed)?;
        loop {
            let field = match mp.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => return Err(BodyError::Malformed),
            };
            let Some(name) = field.name().map(str::to_string) else {
                continue;
            };
            let data = field.bytes().await.map_err(|_| BodyError::Malformed)?;
            if name == "file" {
                self.file = Some(data.to_vec());
            } else {
                self.fields.insert(name, String::from_utf8_lossy(&data).into_owned());
            }
        }
        Ok(())
    }
}

fn truthy(v: Option<&str>) -> bool {
    matches!(v, Some(s) if s == "1" || s.eq_ignore_ascii_case("true"))
}

/// Collects the body, giving up as soon as it exceeds `limit` bytes (a
/// declared `Content-Length` over the limit is refused before reading).
pub(crate) async fn read_body(parts: &Parts, body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = body;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        match poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            None => break,
            Some(Err(_)) => return Err(BodyError::Malformed),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if buf.len() + data.len() > limit {
                        return Err(BodyError::TooLarge);
                    }
                    buf.extend_from_slice(&data);
                }
            }
        }
    }
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    async fn parse(uri: &str, content_type: Option<&str>, body: &[u8]) -> Result<Params, BodyError> {
        let mut b = Request::builder().method("POST").uri(uri);
        if let Some(ct) = content_type {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        let (parts, _) = b.body(()).expect("valid request").into_parts();
        let mut p = Params::from_query(parts.uri.query());
        p.merge_body(&parts, Bytes::copy_from_slice(body)).await?;
        Ok(p)
    }

    #[tokio::test]
    async fn query_only() {
        let p = parse("/in.php?key=k&method=base64&body=a%2Bb+c", None, b"").await.unwrap();
        assert_eq!(p.get("key"), Some("k"));
        assert_eq!(p.raw("body"), Some("a+b c"));
    }

    #[tokio::test]
    async fn urlencoded_body_wins_over_query() {
        let p = parse(
            "/in.php?key=fromquery&json=1",
            Some("application/x-www-form-urlencoded"),
            b"key=frombody&method=base64",
        )
        .await
        .unwrap();
        assert_eq!(p.get("key"), Some("frombody"));
        assert_eq!(p.get("method"), Some("base64"));
        assert!(p.wants_json());
    }

    #[tokio::test]
    async fn json_body_and_text_plain_json() {
        for ct in [
            Some("application/json"),
            Some("text/plain;charset=UTF-8"),
            None,
            Some("application/x-www-form-urlencoded"),
        ] {
            let p =
                parse("/in.php?method=base64", ct, br#" {"body":"QUJD","json":true,"numeric":1,"lang":null,"x":[1]}"#)
                    .await
                    .unwrap();
            assert_eq!(p.get("body"), Some("QUJD"), "{ct:?}");
            assert_eq!(p.get("json"), Some("1"));
            assert_eq!(p.get("numeric"), Some("1"));
            assert_eq!(p.get("lang"), None);
            assert_eq!(p.get("x"), Some("[1]"));
            assert_eq!(p.get("method"), Some("base64"));
        }
    }

    #[tokio::test]
    async fn broken_json_declared_as_json_is_malformed() {
        assert_eq!(parse("/in.php", Some("application/json"), b"{nope").await.unwrap_err(), BodyError::Malformed);
        assert_eq!(parse("/in.php", Some("application/json"), b"key=x").await.unwrap_err(), BodyError::Malformed);
        // The same bytes without a JSON content type fall back to urlencoded.
        let p = parse("/in.php", Some("text/plain"), b"{nope").await.unwrap();
        assert_eq!(p.raw("{nope"), Some(""));
    }

    #[tokio::test]
    async fn multipart_file_and_fields() {
        let body = b"--XyZ\r\n\
Content-Disposition: form-data; name=\"method\"\r\n\r\n\
post\r\n\
--XyZ\r\n\
Content-Disposition: form-data; name=\"file\"; filename=\"c.png\"\r\n\
Content-Type: image/png\r\n\r\n\
\x89PNG\x00\x01\r\n\
--XyZ--\r\n";
        let p = parse("/in.php?key=k&method=base64", Some("multipart/form-data; boundary=XyZ"), body).await.unwrap();
        assert_eq!(p.get("method"), Some("post"));
        assert_eq!(p.get("key"), Some("k"));
        assert_eq!(p.file(), Some(&b"\x89PNG\x00\x01"[..]));
    }

    #[tokio::test]
    async fn broken_multipart_is_malformed() {
        assert_eq!(parse("/in.php", Some("multipart/form-data"), b"--a\r\n").await.unwrap_err(), BodyError::Malformed);
        assert_eq!(
            parse("/in.php", Some("multipart/form-data; boundary=a"), b"garbage without parts").await.unwrap_err(),
            BodyError::Malformed
        );
    }

    #[tokio::test]
    async fn body_limit() {
        let (parts, _) = Request::builder().uri("/in.php").body(()).unwrap().into_parts();
        let ok = read_body(&parts, Body::from(vec![b'a'; 10]), 10).await.unwrap();
        assert_eq!(ok.len(), 10);
        assert_eq!(read_body(&parts, Body::from(vec![b'a'; 11]), 10).await.unwrap_err(), BodyError::TooLarge);
        let (parts, _) =
            Request::builder().uri("/in.php").header(header::CONTENT_LENGTH, "999").body(()).unwrap().into_parts();
        assert_eq!(read_body(&parts, Body::empty(), 10).await.unwrap_err(), BodyError::TooLarge);
    }
}
