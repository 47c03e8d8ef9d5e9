//! `in.php`: reading a submit out of the parameters.

use std::net::IpAddr;

use captcha_core::{Engine, ErrorCode, ImageOptions, Method, Protocol, SubmitRequest, TaskSpec, TokenOptions};
use captcha_netguard::NetPolicy;

use crate::base64img;
use crate::params::Params;

/// The classic token methods.
pub(crate) const TOKEN_METHODS: &[&str] = &["userrecaptcha", "turnstile", "hcaptcha", "altcha", "cap"];

/// A `pageurl` / `websiteURL`: present (`ERROR_PAGEURL`), http(s), and not an
/// address the outbound policy refuses (`ERROR_PAGEURL`; names are checked
/// again when the page is loaded).
pub(crate) fn page_url(policy: &NetPolicy, v: Option<&str>) -> Result<String, ErrorCode> {
    let v = v.map(str::trim).filter(|v| !v.is_empty()).ok_or(ErrorCode::PageUrl)?;
    policy.check_url(v).map_err(|_| ErrorCode::PageUrl)?;
    Ok(v.to_string())
}

/// A `pingback` / `callbackUrl` / `addr`: http(s) and not a refused address
/// (`ERROR_IP_ADDRES`).
pub(crate) fn callback_url(policy: &NetPolicy, v: Option<&str>) -> Result<Option<String>, ErrorCode> {
    match v.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) if v.len() > 2048 => Err(ErrorCode::IpAddres),
        Some(v) => {
            policy.check_url(v).map_err(|_| ErrorCode::IpAddres)?;
            Ok(Some(v.to_string()))
        }
    }
}

/// `engine=browser|native` (absent: the router decides).
pub(crate) fn engine(v: Option<&str>) -> Result<Option<Engine>, ErrorCode> {
    match v.map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("auto") => Ok(None),
        Some("browser") => Ok(Some(Engine::Browser)),
        Some("native") => Ok(Some(Engine::Native)),
        Some(_) => Err(ErrorCode::BadParameters),
    }
}

/// A token method's parameters (`googlekey`/`sitekey`, `pageurl`, …).
fn token_spec(p: &Params, method: &str, policy: &NetPolicy) -> Result<TaskSpec, ErrorCode> {
    let v3 = p.get("version").is_some_and(|v| v.eq_ignore_ascii_case("v3"));
    let method = match method {
        "userrecaptcha" if v3 => Method::RecaptchaV3,
        "userrecaptcha" => Method::RecaptchaV2,
        "turnstile" => Method::Turnstile,
        "hcaptcha" => Method::Hcaptcha,
        "altcha" => Method::Altcha,
        "cap" => Method::Cap,
        _ => return Err(ErrorCode::BadParameters),
    };
    let site_key = p.get("googlekey").or_else(|| p.get("sitekey")).map(str::to_string);
    if method.needs_site_key() && site_key.is_none() {
        return Err(ErrorCode::GoogleKey);
    }
    let options = TokenOptions {
        page_url: page_url(policy, p.get("pageurl"))?,
        site_key,
        action: p.get("action").map(str::to_string),
        data: p.get("data").or_else(|| p.get("data-s")).map(str::to_string),
        page_data: p.get("pagedata").map(str::to_string),
        invisible: flag(p, "invisible")?,
        enterprise: flag(p, "enterprise")?,
        min_score: p.get("min_score").map(str::to_string),
        user_agent: p.get("userAgent").or_else(|| p.get("useragent")).map(str::to_string),
        engine: engine(p.get("engine"))?,
    };
    Ok(TaskSpec::Token { method, options })
}

/// Longest `textinstructions` kept; longer ones are cut, not refused.
pub(crate) const MAX_INSTRUCTIONS_CHARS: usize = 140;

/// Where the image of an image task comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImageSource {
    /// `method=post`: the multipart part named `file`.
    File,
    /// `method=base64`: the `body` parameter.
    Base64,
}

/// Builds the core's [`SubmitRequest`] from an `in.php` request's parameters.
///
/// Checks, in order: `key` present; `method` known; image options valid; image present and decodable.
pub(crate) fn parse_submit(
    mut p: Params,
    client_ip: Option<IpAddr>,
    policy: &NetPolicy,
) -> Result<SubmitRequest, ErrorCode> {
    let key = p.get("key").ok_or(ErrorCode::WrongUserKey)?.to_string();

    let method = p.get("method").map(str::to_ascii_lowercase);
    let source = match method.as_deref() {
        Some("post") => ImageSource::File,
        Some("base64") => ImageSource::Base64,
        Some(m) if TOKEN_METHODS.contains(&m) => {
            let spec = token_spec(&p, m, policy)?;
            return Ok(SubmitRequest {
                key,
                spec,
                pingback: callback_url(policy, p.get("pingback"))?,
                soft_id: p.get("soft_id").map(str::to_string),
                client_ip,
                protocol: Protocol::Classic,
            });
        }
        Some(_) => return Err(ErrorCode::BadParameters),
        // Lenient: no method, but the image makes the intent plain.
        None if p.file().is_some() => ImageSource::File,
        None if p.raw("body").is_some() => ImageSource::Base64,
        None => return Err(ErrorCode::BadParameters),
    };
    // Grid and coordinate tasks are image uploads with a flag; no pool takes them yet.
    if flag(&p, "recaptcha")? || flag(&p, "coordinatescaptcha")? {
        return Err(ErrorCode::TaskNotSupported);
    }

    let options = image_options(&p)?;
    let image = match source {
        ImageSource::File => p.take_file().ok_or(ErrorCode::Upload)?,
        ImageSource::Base64 => base64img::decode(p.raw("body").ok_or(ErrorCode::ZeroCaptchaFilesize)?)?,
    };
    if image.is_empty() {
        return Err(ErrorCode::ZeroCaptchaFilesize);
    }

    Ok(SubmitRequest {
        key,
        spec: TaskSpec::Image { image, options },
        pingback: callback_url(policy, p.get("pingback"))?,
        soft_id: p.get("soft_id").map(str::to_string),
        client_ip,
        protocol: Protocol::Classic,
    })
}

/// `phrase`, `regsense`, `numeric`, `calc`, `min_len`, `max_len`, `language`,
/// `lang`, `textinstructions`; `imginstructions` is accepted and ignored.
pub(crate) fn image_options(p: &Params) -> Result<ImageOptions, ErrorCode> {
    let min_len = bounded(p, "min_len", 20)?;
    let max_len = bounded(p, "max_len", 20)?;
    if min_len > 0 && max_len > 0 && min_len > max_len {
        return Err(ErrorCode::BadParameters);
    }
    let lang = match p.get("lang") {
        Some(l) if l.len() <= 16 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') => {
            Some(l.to_string())
        }
        Some(_) => return Err(ErrorCode::BadParameters),
        None => None,
    };
    Ok(ImageOptions {
        phrase: flag(p, "phrase")?,
        case_sensitive: flag(p, "regsense")?,
        numeric: bounded(p, "numeric", 4)?,
        calc: flag(p, "calc")?,
        min_len,
        max_len,
        language: bounded(p, "language", 2)?,
        lang,
        instructions: p.get("textinstructions").map(|t| t.chars().take(MAX_INSTRUCTIONS_CHARS).collect()),
    })
}

/// A 0/1 switch; absent or blank is 0, `true`/`false` are tolerated.
fn flag(p: &Params, name: &str) -> Result<bool, ErrorCode> {
    match p.get(name) {
        None | Some("0") => Ok(false),
        Some("1") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(_) => Err(ErrorCode::BadParameters),
    }
}

/// A small decimal in `0..=max`; absent or blank is 0.
fn bounded(p: &Params, name: &str, max: u8) -> Result<u8, ErrorCode> {
    match p.get(name) {
        None => Ok(0),
        Some(v) if !v.is_empty() && v.len() <= 3 && v.bytes().all(|b| b.is_ascii_digit()) => {
            v.parse::<u8>().ok().filter(|n| *n <= max).ok_or(ErrorCode::BadParameters)
        }
        Some(_) => Err(ErrorCode::BadParameters),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn params(pairs: &[(&str, &str)]) -> Params {
        let mut p = Params::default();
        for (k, v) in pairs {
            p.set(k, v);
        }
        p
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn err(pairs: &[(&str, &str)]) -> ErrorCode {
        parse_submit(params(pairs), None, &NetPolicy::strict()).expect_err("should be refused")
    }

    fn ok(pairs: &[(&str, &str)]) -> SubmitRequest {
        parse_submit(params(pairs), None, &NetPolicy::strict()).expect("accepted")
    }

    #[test]
    fn base64_submit_with_every_option() {
        let img = vec![7u8; 300];
        let body = b64(&img);
        let req = parse_submit(
            params(&[
                ("key", KEY),
                ("method", "base64"),
                ("body", &body),
                ("phrase", "1"),
                ("regsense", "true"),
                ("numeric", "4"),
                ("calc", "0"),
                ("min_len", "3"),
                ("max_len", "20"),
                ("language", "2"),
                ("lang", "en"),
                ("textinstructions", &"x".repeat(200)),
                ("imginstructions", "ignored"),
                ("pingback", "https://example.test/cb"),
                ("soft_id", "4580"),
            ]),
            Some("10.0.0.7".parse().unwrap()),
            &NetPolicy::strict(),
        )
        .unwrap();
        assert_eq!(req.key, KEY);
        assert_eq!(req.pingback.as_deref(), Some("https://example.test/cb"));
        assert_eq!(req.soft_id.as_deref(), Some("4580"));
        assert_eq!(req.client_ip, Some("10.0.0.7".parse().unwrap()));
        let TaskSpec::Image { image, options } = req.spec else { panic!("not an image") };
        assert_eq!(image, img);
        assert_eq!(
            options,
            ImageOptions {
                phrase: true,
                case_sensitive: true,
                numeric: 4,
                calc: false,
                min_len: 3,
                max_len: 20,
                language: 2,
                lang: Some("en".into()),
                instructions: Some("x".repeat(MAX_INSTRUCTIONS_CHARS)),
            }
        );
    }

    #[test]
    fn defaults_blank_values_and_inferred_method() {
        let req = parse_submit(
            params(&[("key", KEY), ("body", &b64(&[1u8; 200])), ("numeric", ""), ("lang", " ")]),
            None,
            &NetPolicy::strict(),
        )
        .unwrap();
        let TaskSpec::Image { options, .. } = req.spec else { panic!("not an image") };
        assert_eq!(options, ImageOptions::default());
        assert_eq!(req.pingback, None);
        assert_eq!(req.soft_id, None);
    }

    #[test]
    fn key_is_checked_first() {
        assert_eq!(err(&[("method", "nonsense")]), ErrorCode::WrongUserKey);
        assert_eq!(err(&[("key", "  "), ("method", "base64")]), ErrorCode::WrongUserKey);
    }

    #[test]
    fn methods() {
        assert_eq!(err(&[("key", KEY), ("method", "nonsense")]), ErrorCode::BadParameters);
        assert_eq!(err(&[("key", KEY)]), ErrorCode::BadParameters);
        for m in ["altcha", "cap"] {
            assert_eq!(err(&[("key", KEY), ("method", m)]), ErrorCode::PageUrl, "{m}");
        }
        for m in ["userrecaptcha", "turnstile", "hcaptcha"] {
            assert_eq!(err(&[("key", KEY), ("method", m), ("pageurl", "https://a.example/")]), ErrorCode::GoogleKey);
        }
        assert_eq!(err(&[("key", KEY), ("method", "TurnStile"), ("sitekey", "x")]), ErrorCode::PageUrl);
        let body = b64(&[1u8; 200]);
        assert_eq!(
            err(&[("key", KEY), ("method", "base64"), ("body", &body), ("recaptcha", "1")]),
            ErrorCode::TaskNotSupported
        );
        assert_eq!(
            err(&[("key", KEY), ("method", "base64"), ("body", &body), ("coordinatescaptcha", "1")]),
            ErrorCode::TaskNotSupported
        );
    }

    #[test]
    fn token_methods() {
        let r = ok(&[
            ("key", KEY),
            ("method", "userrecaptcha"),
            ("googlekey", "6Le-site"),
            ("pageurl", "https://a.example/login"),
            ("version", "v3"),
            ("action", "login"),
            ("min_score", "0.7"),
            ("pingback", "https://hooks.example/cb"),
        ]);
        let TaskSpec::Token { method, options } = r.spec else { panic!("not a token task") };
        assert_eq!(method, Method::RecaptchaV3);
        assert_eq!(options.site_key.as_deref(), Some("6Le-site"));
        assert_eq!((options.action.as_deref(), options.min_score.as_deref()), (Some("login"), Some("0.7")));
        assert_eq!(r.pingback.as_deref(), Some("https://hooks.example/cb"));

        let r = ok(&[
            ("key", KEY),
            ("method", "turnstile"),
            ("sitekey", "0x4AAA"),
            ("pageurl", "https://a.example/"),
            ("data", "cdata"),
            ("pagedata", "chl"),
            ("useragent", "UA"),
        ]);
        let TaskSpec::Token { method, options } = r.spec else { panic!("not a token task") };
        assert_eq!(method, Method::Turnstile);
        assert_eq!((options.data.as_deref(), options.page_data.as_deref()), (Some("cdata"), Some("chl")));
        assert_eq!(options.user_agent.as_deref(), Some("UA"));

        let r = ok(&[("key", KEY), ("method", "cap"), ("pageurl", "https://a.example/"), ("engine", "native")]);
        let TaskSpec::Token { method, options } = r.spec else { panic!("not a token task") };
        assert_eq!((method, options.engine), (Method::Cap, Some(Engine::Native)));
        assert_eq!(
            err(&[("key", KEY), ("method", "cap"), ("pageurl", "https://a.example/"), ("engine", "warp")]),
            ErrorCode::BadParameters
        );
    }

    #[test]
    fn private_addresses_are_refused_unless_allowed() {
        let page = [("key", KEY), ("method", "altcha"), ("pageurl", "http://127.0.0.1:8080/altcha")];
        assert_eq!(err(&page), ErrorCode::PageUrl);
        assert_eq!(err(&[("key", KEY), ("method", "altcha"), ("pageurl", "file:///etc/passwd")]), ErrorCode::PageUrl);
        let allow = NetPolicy::parse_list("127.0.0.0/8").expect("policy");
        assert!(parse_submit(params(&page), None, &allow).is_ok());
        let body = b64(&[1u8; 200]);
        for cb in ["http://169.254.169.254/latest", "http://10.0.0.1/cb", "ftp://a.example/", "http://[::1]/"] {
            assert_eq!(
                err(&[("key", KEY), ("method", "base64"), ("body", &body), ("pingback", cb)]),
                ErrorCode::IpAddres,
                "{cb}"
            );
        }
    }

    #[test]
    fn bad_option_values() {
        let body = b64(&[1u8; 200]);
        for (name, value) in [
            ("numeric", "9"),
            ("numeric", "-1"),
            ("numeric", "1.0"),
            ("min_len", "abc"),
            ("min_len", "21"),
            ("max_len", "99999999999"),
            ("phrase", "2"),
            ("regsense", "yes"),
            ("calc", "x"),
            ("language", "3"),
            ("lang", "not a language code"),
        ] {
            assert_eq!(
                err(&[("key", KEY), ("method", "base64"), ("body", &body), (name, value)]),
                ErrorCode::BadParameters,
                "{name}={value}"
            );
        }
        assert_eq!(
            err(&[("key", KEY), ("method", "base64"), ("body", &body), ("min_len", "5"), ("max_len", "4")]),
            ErrorCode::BadParameters
        );
    }

    #[test]
    fn missing_or_broken_images() {
        assert_eq!(err(&[("key", KEY), ("method", "post")]), ErrorCode::Upload);
        assert_eq!(err(&[("key", KEY), ("method", "base64")]), ErrorCode::ZeroCaptchaFilesize);
        assert_eq!(err(&[("key", KEY), ("method", "base64"), ("body", "")]), ErrorCode::ZeroCaptchaFilesize);
        assert_eq!(err(&[("key", KEY), ("method", "base64"), ("body", "!!!")]), ErrorCode::Upload);
    }
}
