//! Rendering answers in the classic format: plain text by default, JSON with
//! `json=1`; always HTTP 200.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use captcha_core::ErrorCode;

/// How the client wants its answer, read from `json` and `header_acao`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Flags {
    pub json: bool,
    pub acao: bool,
}

/// One classic answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `OK|<text>` / `{"status":1,"request":"<text>"}`.
    Ok(String),
    /// `OK|<answer>|<price>` / `{"status":1,"request":"<answer>","price":"<price>"}` (`get2`).
    OkPrice { answer: String, price: String },
    /// A success sent without the `OK|` prefix: the balance, `OK_REPORT_RECORDED`,
    /// the `|`-joined answers of `ids=`. JSON: `{"status":1,"request":"<text>"}`.
    Bare(String),
    /// The bare code / `{"status":0,"request":"<code>","error_text":"…"}`
    /// (`CAPCHA_NOT_READY` carries no `error_text`).
    Error(ErrorCode),
    /// A JSON task API answer, sent as it is whatever the flags say.
    Json(serde_json::Value),
}

impl Reply {
    /// The body and its content type.
    pub(crate) fn body(&self, json: bool) -> (String, &'static str) {
        if let Reply::Json(v) = self {
            return (v.to_string(), "application/json");
        }
        if json {
            // Built by hand so `status` comes first, as the commercial services send it.
            let q = |s: &str| serde_json::Value::from(s).to_string();
            let v = match self {
                Reply::Ok(text) | Reply::Bare(text) => format!(r#"{{"status":1,"request":{}}}"#, q(text)),
                Reply::OkPrice { answer, price } => {
                    format!(r#"{{"status":1,"request":{},"price":{}}}"#, q(answer), q(price))
                }
                Reply::Error(ErrorCode::CaptchaNotReady) => {
                    format!(r#"{{"status":0,"request":{}}}"#, q(ErrorCode::CaptchaNotReady.code()))
                }
                Reply::Error(code) => {
                    format!(r#"{{"status":0,"request":{},"error_text":{}}}"#, q(code.code()), q(code.description()))
                }
                Reply::Json(v) => v.to_string(),
            };
            (v, "application/json")
        } else {
            let s = match self {
                Reply::Ok(text) => format!("OK|{text}"),
                Reply::OkPrice { answer, price } => format!("OK|{answer}|{price}"),
                Reply::Bare(text) => text.clone(),
                Reply::Error(code) => code.code().to_string(),
                Reply::Json(v) => v.to_string(),
            };
            (s, "text/plain; charset=utf-8")
        }
    }

    pub(crate) fn into_response(self, flags: Flags) -> Response {
        let (body, content_type) = self.body(flags.json);
        let mut resp = (StatusCode::OK, body).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if flags.acao {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        }
        resp
    }
}

impl From<ErrorCode> for Reply {
    fn from(code: ErrorCode) -> Self {
        Reply::Error(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain() {
        assert_eq!(Reply::Ok("123".into()).body(false), ("OK|123".into(), "text/plain; charset=utf-8"));
        assert_eq!(Reply::OkPrice { answer: "abc".into(), price: "0.00085".into() }.body(false).0, "OK|abc|0.00085");
        assert_eq!(Reply::Bare("12.3456".into()).body(false).0, "12.3456");
        assert_eq!(Reply::Error(ErrorCode::CaptchaNotReady).body(false).0, "CAPCHA_NOT_READY");
        assert_eq!(Reply::Error(ErrorCode::ZeroBalance).body(false).0, "ERROR_ZERO_BALANCE");
    }

    #[test]
    fn json() {
        let parse = |r: Reply| -> serde_json::Value {
            let (s, ct) = r.body(true);
            assert_eq!(ct, "application/json");
            serde_json::from_str(&s).unwrap()
        };
        assert_eq!(parse(Reply::Ok("123".into())), json!({"status":1,"request":"123"}));
        assert_eq!(Reply::Ok("1\"2".into()).body(true).0, r#"{"status":1,"request":"1\"2"}"#);
        assert_eq!(
            parse(Reply::OkPrice { answer: "abc".into(), price: "0.00085".into() }),
            json!({"status":1,"request":"abc","price":"0.00085"})
        );
        assert_eq!(parse(Reply::Bare("12.3456".into())), json!({"status":1,"request":"12.3456"}));
        assert_eq!(parse(Reply::Error(ErrorCode::CaptchaNotReady)), json!({"status":0,"request":"CAPCHA_NOT_READY"}));
        let e = parse(Reply::Error(ErrorCode::WrongIdFormat));
        assert_eq!(e["status"], 0);
        assert_eq!(e["request"], "ERROR_WRONG_ID_FORMAT");
        assert!(e["error_text"].as_str().is_some_and(|t| !t.is_empty()));
    }

    #[test]
    fn headers() {
        let r = Reply::Ok("1".into()).into_response(Flags { json: false, acao: true });
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        let r = Reply::Error(ErrorCode::Internal).into_response(Flags { json: true, acao: false });
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        assert!(r.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    }
}
