//! ALTCHA (widget `altcha` 3.x, server `altcha-lib` 2.x, and the v1 scheme of
//! both). What the widget does, and so what this module does:
//!
//! 1. `GET` the `challenge` attribute's URL (`challengeurl` in widget 1.x/2.x;
//!    a value starting with `{` is an inline JSON challenge).
//! 2. v2 challenge `{parameters: {algorithm, nonce, salt, cost, keyLength,
//!    keyPrefix, …}, signature}`: find a counter `n` such that
//!    `deriveKey(salt, nonce || u32be(n))` starts with `keyPrefix`; the payload
//!    is `base64(JSON{challenge: {parameters, signature}, solution: {counter,
//!    derivedKey, time}})`.
//! 3. v1 challenge `{algorithm, challenge, salt, signature, maxnumber}`: find
//!    `n <= maxnumber` with `hex(SHA-256(salt + n)) == challenge`; the payload
//!    is `base64(JSON{algorithm, challenge, number, salt, signature, took})`.

use std::time::{Duration, Instant};

use captcha_netguard::{GuardedClient, Url};
use serde_json::{json, Map, Value};

use crate::engine::{Algorithm, CounterMode, Prefix, Task};
use crate::{
    fetch, html, parse_json, resolve_url, run_blocking, stop_error, PowError, Scheme, Solution, SolveOptions, Widget,
};

/// What the page says about its ALTCHA widget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AltchaWidget {
    /// The challenge URL or inline JSON; `None` when configured by script only.
    pub challenge: Option<String>,
    /// The form field name (`name` attribute, default `altcha`).
    pub field: String,
    /// Set when the widget is configured for server verification (Sentinel),
    /// which needs more than the proof.
    pub verify_url: Option<String>,
}

/// The first `<altcha-widget>` on the page, if any.
pub fn find(page: &str) -> Option<AltchaWidget> {
    let tag = html::find_tag(page, "altcha-widget")?;
    let config: Option<Value> = tag.get("configuration").and_then(|c| serde_json::from_str(c).ok());
    let from_config = |k: &str| config.as_ref().and_then(|c| c.get(k)).and_then(Value::as_str).map(str::to_string);
    let nonempty = |v: Option<&str>| v.map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
    let challenge = nonempty(tag.get("challenge"))
        .or_else(|| nonempty(tag.get("challengeurl")))
        .or_else(|| nonempty(tag.get("challengejson")))
        .or_else(|| from_config("challenge"))
        .or_else(|| from_config("challengeurl"));
    let field = nonempty(tag.get("name")).unwrap_or_else(|| "altcha".to_string());
    let verify_url =
        nonempty(tag.get("verifyurl")).or_else(|| from_config("verifyUrl")).or_else(|| from_config("verifyurl"));
    Some(AltchaWidget { challenge, field, verify_url })
}

/// A parsed challenge, ready to search.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub task: Task,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub enum Kind {
    V1 { algorithm: String, challenge: String, salt: String, signature: Value },
    V2 { parameters: Value, signature: Option<Value>, algorithm: String },
}

const MAX_HEX_FIELD: usize = 2048;

fn str_field<'a>(o: &'a Map<String, Value>, k: &str) -> Result<&'a str, PowError> {
    o.get(k).and_then(Value::as_str).ok_or_else(|| PowError::BadChallenge(format!("missing {k}")))
}

fn hex_field(o: &Map<String, Value>, k: &str) -> Result<Vec<u8>, PowError> {
    let s = str_field(o, k)?;
    if s.len() > MAX_HEX_FIELD {
        return Err(PowError::BadChallenge(format!("{k} too long")));
    }
    hex::decode(s).map_err(|_| PowError::BadChallenge(format!("{k} is not hex")))
}

fn positive_int(o: &Map<String, Value>, k: &str, max: u64) -> Result<Option<u64>, PowError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 && n <= max => Ok(Some(n)),
            _ => Err(PowError::BadChallenge(format!("{k} must be an integer in 1..={max}"))),
        },
    }
}

/// Parses a challenge as the widget would (v1 if it has a `challenge` field).
pub fn prepare(challenge: &Value, opts: &SolveOptions) -> Result<Prepared, PowError> {
    let o = challenge.as_object().ok_or_else(|| PowError::BadChallenge("not a JSON object".into()))?;
    if o.contains_key("his") {
        return Err(PowError::NotReadable("the server asks for human-interaction data (HIS)".into()));
    }
    if o.get("codeChallenge").is_some_and(|c| !c.is_null()) {
        return Err(PowError::NotReadable("the challenge includes a code challenge".into()));
    }
    let max_attempts = opts.max_attempts.max(1);
    if o.contains_key("challenge") {
        // v1, as the widget's createChallengeFromV1: nonce = UTF-8 salt, decimal counter.
        let algorithm = str_field(o, "algorithm")?.to_string();
        let (alg, key_len) = match algorithm.as_str() {
            "SHA-256" => (Algorithm::Sha256, 32),
            "SHA-384" => (Algorithm::Sha384, 48),
            "SHA-512" => (Algorithm::Sha512, 64),
            other => return Err(PowError::Unsupported(format!("ALTCHA v1 algorithm {other}"))),
        };
        let hash = str_field(o, "challenge")?.to_string();
        let salt = str_field(o, "salt")?.to_string();
        if salt.len() > MAX_HEX_FIELD {
            return Err(PowError::BadChallenge("salt too long".into()));
        }
        let prefix = Prefix::parse(&hash)
            .filter(|p| p.hex_len() <= key_len * 2)
            .ok_or_else(|| PowError::BadChallenge("challenge is not a hash".into()))?;
        let max = positive_int(o, "maxnumber", u64::MAX)?.or(positive_int(o, "maxNumber", u64::MAX)?);
        let max_counter = max.unwrap_or(max_attempts).min(max_attempts);
        let signature = o.get("signature").cloned().unwrap_or(Value::Null);
        return Ok(Prepared {
            task: Task {
                algorithm: alg,
                cost: 1,
                key_len,
                salt: Vec::new(),
                nonce: salt.as_bytes().to_vec(),
                mode: CounterMode::Decimal,
                prefix,
                max_counter,
            },
            kind: Kind::V1 { algorithm, challenge: hash, salt, signature },
        });
    }
    let parameters = o.get("parameters").ok_or_else(|| PowError::BadChallenge("no parameters".into()))?;
    let p = parameters.as_object().ok_or_else(|| PowError::BadChallenge("parameters is not an object".into()))?;
    let algorithm = str_field(p, "algorithm")?.to_string();
    let alg = Algorithm::from_altcha(&algorithm)
        .ok_or_else(|| PowError::Unsupported(format!("ALTCHA algorithm {algorithm}")))?;
    let nonce = hex_field(p, "nonce")?;
    let salt = hex_field(p, "salt")?;
    let cost = positive_int(p, "cost", u64::from(u32::MAX))?
        .ok_or_else(|| PowError::BadChallenge("missing cost".into()))? as u32;
    let key_len = positive_int(p, "keyLength", 1024)?.unwrap_or(32) as usize;
    let prefix_hex = str_field(p, "keyPrefix")?;
    let prefix = Prefix::parse(prefix_hex)
        .filter(|x| x.hex_len() <= key_len * 2)
        .ok_or_else(|| PowError::BadChallenge("bad keyPrefix".into()))?;
    let max_counter = u64::from(u32::MAX).min(max_attempts - 1);
    Ok(Prepared {
        task: Task { algorithm: alg, cost, key_len, salt, nonce, mode: CounterMode::Uint32, prefix, max_counter },
        kind: Kind::V2 { parameters: parameters.clone(), signature: o.get("signature").cloned(), algorithm },
    })
}

/// The form value for a found counter and key, as the widget builds it.
pub fn payload(prepared: &Prepared, counter: u64, key: &[u8], took: Duration) -> String {
    use base64::Engine as _;
    // The widget reports time in ms rounded down to one decimal.
    let ms = (took.as_secs_f64() * 10_000.0).floor() / 10.0;
    let value = match &prepared.kind {
        Kind::V1 { algorithm, challenge, salt, signature } => json!({
            "algorithm": algorithm,
            "challenge": challenge,
            "number": counter,
            "salt": salt,
            "signature": signature,
            "took": ms,
        }),
        Kind::V2 { parameters, signature, .. } => {
            let mut ch = Map::new();
            ch.insert("parameters".into(), parameters.clone());
            if let Some(s) = signature {
                ch.insert("signature".into(), s.clone());
            }
            json!({
                "challenge": Value::Object(ch),
                "solution": { "counter": counter, "derivedKey": hex::encode(key), "time": ms },
            })
        }
    };
    base64::engine::general_purpose::STANDARD.encode(value.to_string())
}

fn config_has_verify_url(header: &str) -> bool {
    serde_json::from_str::<Value>(header).ok().is_some_and(|v| {
        ["verifyurl", "verifyUrl"].iter().any(|k| v.get(k).and_then(Value::as_str).is_some_and(|s| !s.is_empty()))
    })
}

pub(crate) async fn solve(
    client: &GuardedClient,
    page: &Url,
    w: AltchaWidget,
    opts: &SolveOptions,
) -> Result<Solution, PowError> {
    if w.verify_url.is_some() {
        return Err(PowError::NotReadable("the widget uses server verification".into()));
    }
    let source =
        w.challenge.ok_or_else(|| PowError::NotReadable("no challenge URL in the widget's attributes".into()))?;
    let challenge = if source.starts_with('{') {
        serde_json::from_str(&source).map_err(|_| PowError::BadChallenge("inline challenge is not JSON".into()))?
    } else {
        let url = resolve_url(client, page, &source)?;
        let body = fetch(client, reqwest::Method::GET, url.as_str(), None, opts.max_json_bytes).await?;
        if body.altcha_config.as_deref().is_some_and(config_has_verify_url) {
            return Err(PowError::NotReadable("the server configures server verification".into()));
        }
        parse_json(url.as_str(), &body.bytes)?
    };
    if challenge.get("configuration").is_some_and(|c| config_has_verify_url(&c.to_string())) {
        return Err(PowError::NotReadable("the challenge configures server verification".into()));
    }
    let prepared = prepare(&challenge, opts)?;
    let threads = opts.thread_count();
    let deadline = Instant::now() + opts.time_limit;
    let task = prepared.task.clone();
    let start = Instant::now();
    let result = run_blocking(opts, move |cancelled| task.search(threads, cancelled, Some(deadline))).await?;
    let took = start.elapsed();
    let (found, attempts) = result.map_err(|s| stop_error(s, prepared.task.max_counter.saturating_add(1), opts))?;
    let scheme = match &prepared.kind {
        Kind::V1 { .. } => Scheme::AltchaV1,
        Kind::V2 { algorithm, .. } => Scheme::AltchaV2(algorithm.clone()),
    };
    Ok(Solution {
        widget: Widget::Altcha,
        scheme,
        token: payload(&prepared, found.counter, &found.key, took),
        field: w.field,
        attempts,
        compute: took,
        elapsed: Duration::ZERO,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_v3_and_v2_attributes() {
        let w = find(r#"<altcha-widget challenge="/c" name="pow"></altcha-widget>"#).unwrap();
        assert_eq!(w.challenge.as_deref(), Some("/c"));
        assert_eq!(w.field, "pow");
        let w = find(r#"<altcha-widget challengeurl="https://x.test/c"></altcha-widget>"#).unwrap();
        assert_eq!(w.challenge.as_deref(), Some("https://x.test/c"));
        assert_eq!(w.field, "altcha");
        let w =
            find(r#"<altcha-widget configuration='{"challenge":"/cfg","verifyUrl":"/v"}'></altcha-widget>"#).unwrap();
        assert_eq!(w.challenge.as_deref(), Some("/cfg"));
        assert_eq!(w.verify_url.as_deref(), Some("/v"));
        assert_eq!(find("<altcha-widget></altcha-widget>").unwrap().challenge, None);
        assert!(find("<p>hi</p>").is_none());
    }

    #[test]
    fn v1_payload_round_trip() {
        // maxnumber bounds the search; the payload names the number found.
        let salt = "a1b2c3d4e5f6&";
        let ch = json!({
            "algorithm": "SHA-256",
            "challenge": "3932e6e863307c4872f17aabe20f566618fc4887b45edffdf5bc3f0acc3ca81d",
            "maxnumber": 20000, "salt": salt, "signature": "sig"
        });
        let p = prepare(&ch, &SolveOptions::default()).unwrap();
        assert_eq!(p.task.max_counter, 20000);
        let (f, _) = p.task.search(2, &|| false, None).unwrap();
        assert_eq!(f.counter, 12345);
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(payload(&p, f.counter, &f.key, Duration::from_millis(12)))
            .unwrap();
        let v: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(v["number"], 12345);
        assert_eq!(v["salt"], salt);
        assert_eq!(v["took"], 12.0);
        let mut small = ch.clone();
        small["maxnumber"] = json!(100);
        let p = prepare(&small, &SolveOptions::default()).unwrap();
        assert!(p.task.search(2, &|| false, None).is_err());
    }

    #[test]
    fn refuses_what_needs_a_browser() {
        let base =
            json!({"parameters": {"algorithm": "ARGON2ID", "nonce": "00", "salt": "00", "cost": 1, "keyPrefix": "00"}});
        assert!(matches!(prepare(&base, &SolveOptions::default()), Err(PowError::Unsupported(_))));
        assert!(matches!(
            prepare(&json!({"his": {"url": "/h"}}), &SolveOptions::default()),
            Err(PowError::NotReadable(_))
        ));
        let bad =
            json!({"parameters": {"algorithm": "SHA-256", "nonce": "zz", "salt": "00", "cost": 1, "keyPrefix": "00"}});
        assert!(matches!(prepare(&bad, &SolveOptions::default()), Err(PowError::BadChallenge(_))));
        let bad =
            json!({"parameters": {"algorithm": "SHA-256", "nonce": "00", "salt": "00", "cost": -1, "keyPrefix": "00"}});
        assert!(matches!(prepare(&bad, &SolveOptions::default()), Err(PowError::BadChallenge(_))));
        assert!(matches!(prepare(&json!([1]), &SolveOptions::default()), Err(PowError::BadChallenge(_))));
    }
}
