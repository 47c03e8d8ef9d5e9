//! The JSON task API of Anti-Captcha, CapMonster Cloud, CapSolver and
//! 2Captcha v2: `POST /createTask`, `/getTaskResult`, `/getBalance` and the
//! report calls, each a JSON object in and out, always HTTP 200.
//!
//! Options sent as `null`, `false`, `0` or `""` count as absent, as the
//! official clients send every option whether set or not.

use captcha_core::{
    format_money, CaptchaService, ErrorCode, ImageOptions, Method, Protocol, Report, SubmitRequest, TaskId, TaskResult,
    TaskSpec, TokenOptions,
};
use captcha_netguard::NetPolicy;
use serde_json::{json, Map, Value};

use crate::base64img;
use crate::submit::{callback_url, engine, page_url, MAX_INSTRUCTIONS_CHARS};

/// The calls of the JSON API, by path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    CreateTask,
    GetTaskResult,
    GetBalance,
    Report(Report),
}

impl Call {
    pub(crate) const PATHS: &'static [(&'static str, Call)] = &[
        ("/createTask", Call::CreateTask),
        ("/getTaskResult", Call::GetTaskResult),
        ("/getBalance", Call::GetBalance),
        ("/reportIncorrectImageCaptcha", Call::Report(Report::Bad)),
        ("/reportIncorrectRecaptcha", Call::Report(Report::Bad)),
        ("/reportIncorrectHcaptcha", Call::Report(Report::Bad)),
        ("/reportIncorrect", Call::Report(Report::Bad)),
        ("/reportCorrectRecaptcha", Call::Report(Report::Good)),
        ("/reportCorrect", Call::Report(Report::Good)),
    ];
}

/// `{"errorId":N,"errorCode":"…","errorDescription":"…"}`.
pub(crate) fn error_body(code: ErrorCode) -> Value {
    let (id, name) = code.json();
    json!({ "errorId": id, "errorCode": name, "errorDescription": code.description() })
}

/// Answers one call whose body has been read (`None`: not a JSON object).
pub(crate) async fn handle(
    service: &dyn CaptchaService,
    call: Call,
    body: Option<Map<String, Value>>,
    client_ip: Option<std::net::IpAddr>,
    policy: &NetPolicy,
    browser_ua: Option<&str>,
) -> Value {
    let Some(body) = body else { return error_body(ErrorCode::BadParameters) };
    match respond(service, call, &body, client_ip, policy, browser_ua).await {
        Ok(v) => v,
        Err(code) => error_body(code),
    }
}

async fn respond(
    service: &dyn CaptchaService,
    call: Call,
    body: &Map<String, Value>,
    client_ip: Option<std::net::IpAddr>,
    policy: &NetPolicy,
    browser_ua: Option<&str>,
) -> Result<Value, ErrorCode> {
    let key = text(body.get("clientKey")).ok_or(ErrorCode::KeyDoesNotExist)?;
    match call {
        Call::CreateTask => {
            let task = match body.get("task") {
                Some(Value::Object(t)) => t,
                _ => return Err(ErrorCode::BadParameters),
            };
            let spec = task_spec(task, policy)?;
            let req = SubmitRequest {
                key,
                spec,
                pingback: callback_url(policy, text(body.get("callbackUrl")).as_deref())?,
                soft_id: text(body.get("softId")),
                client_ip,
                protocol: Protocol::Json,
            };
            let id = service.submit(req).await?;
            Ok(json!({ "errorId": 0, "taskId": id }))
        }
        Call::GetTaskResult => {
            let id = task_id(body.get("taskId"))?;
            match service.result(&key, id).await {
                Err(ErrorCode::Internal) => Ok(processing()),
                Err(code) => Err(code),
                Ok(r) => task_result_json(&r, browser_ua),
            }
        }
        Call::GetBalance => {
            let micros = service.balance(&key).await?;
            // The balance is a JSON number in this API; micro-units are exact in an f64.
            Ok(json!({ "errorId": 0, "balance": micros as f64 / 1e6 }))
        }
        Call::Report(report) => {
            let id = task_id(body.get("taskId"))?;
            service.report(&key, id, report).await?;
            Ok(json!({ "errorId": 0, "status": "success" }))
        }
    }
}

fn processing() -> Value {
    json!({ "errorId": 0, "status": "processing" })
}

/// What `getTaskResult` answers for a result (and what a JSON callback
/// carries): `processing`, `ready` with the solution shape of the task's type,
/// or the `ERROR_CAPTCHA_UNSOLVABLE` error.
pub fn task_result_json(r: &TaskResult, browser_ua: Option<&str>) -> Result<Value, ErrorCode> {
    match r {
        TaskResult::NotReady => Ok(processing()),
        TaskResult::Unsolvable => Err(ErrorCode::CaptchaUnsolvable),
        TaskResult::Solved { method, answer, price_micros, created_ms, ended_ms, attempts } => {
            let solution = match method {
                Method::Image => json!({ "text": answer }),
                Method::RecaptchaV2 | Method::RecaptchaV3 | Method::Hcaptcha => {
                    json!({ "gRecaptchaResponse": answer, "token": answer })
                }
                Method::Turnstile => match browser_ua {
                    Some(ua) => json!({ "token": answer, "userAgent": ua }),
                    None => json!({ "token": answer }),
                },
                _ => json!({ "token": answer }),
            };
            Ok(json!({
                "errorId": 0,
                "status": "ready",
                "solution": solution,
                "cost": format_money(*price_micros),
                "createTime": created_ms / 1000,
                "endTime": ended_ms / 1000,
                "solveCount": attempts,
            }))
        }
    }
}

/// [`task_result_json`] with errors rendered as error bodies (callbacks).
pub fn task_result_body(r: &TaskResult, browser_ua: Option<&str>) -> Value {
    task_result_json(r, browser_ua).unwrap_or_else(error_body)
}

/// A task id: a positive integer below 2^53, as a number or a digit string.
fn task_id(v: Option<&Value>) -> Result<TaskId, ErrorCode> {
    let id = match v {
        Some(Value::Number(n)) => n.as_u64().ok_or(ErrorCode::WrongCaptchaId)?,
        Some(Value::String(s)) => crate::result::parse_id(Some(s))?,
        _ => return Err(ErrorCode::WrongCaptchaId),
    };
    if id == 0 || id >= 1 << 53 {
        return Err(ErrorCode::WrongCaptchaId);
    }
    Ok(id)
}

/// A string option; `null`, `false`, `0`, `""` count as absent. Numbers are
/// turned into their text (some clients send numeric strings as numbers).
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) if n.as_f64() != Some(0.0) => Some(n.to_string()),
        _ => None,
    }
}

/// A switch: `true`, `1`, `"1"`, `"true"`; absent otherwise.
fn switch(v: Option<&Value>) -> Result<bool, ErrorCode> {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(false),
        Some(Value::Bool(true)) => Ok(true),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            _ => Err(ErrorCode::BadParameters),
        },
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "" | "0" | "false" => Ok(false),
            "1" | "true" => Ok(true),
            _ => Err(ErrorCode::BadParameters),
        },
        Some(_) => Err(ErrorCode::BadParameters),
    }
}

/// A small integer option in `0..=max`; absent (null, false, 0) is 0.
fn small(v: Option<&Value>, max: u8) -> Result<u8, ErrorCode> {
    let n = match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => return Ok(0),
        Some(Value::Number(n)) => n.as_u64().ok_or(ErrorCode::BadParameters)?,
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(0),
        Some(Value::String(s)) => s.trim().parse::<u64>().map_err(|_| ErrorCode::BadParameters)?,
        Some(_) => return Err(ErrorCode::BadParameters),
    };
    u8::try_from(n).ok().filter(|n| *n <= max).ok_or(ErrorCode::BadParameters)
}

/// `task{type,…}` → the core's task. Unknown types are `ERROR_TASK_NOT_SUPPORTED`.
fn task_spec(t: &Map<String, Value>, policy: &NetPolicy) -> Result<TaskSpec, ErrorCode> {
    let ty = text(t.get("type")).ok_or(ErrorCode::BadParameters)?;
    let method = match ty.as_str() {
        "ImageToTextTask" => return image_spec(t),
        "RecaptchaV2Task" | "RecaptchaV2TaskProxyless" | "NoCaptchaTask" | "NoCaptchaTaskProxyless" => {
            Method::RecaptchaV2
        }
        "RecaptchaV2EnterpriseTask" | "RecaptchaV2EnterpriseTaskProxyless" => Method::RecaptchaV2,
        "RecaptchaV3TaskProxyless" | "RecaptchaV3Task" => Method::RecaptchaV3,
        "TurnstileTask" | "TurnstileTaskProxyless" => Method::Turnstile,
        "HCaptchaTask" | "HCaptchaTaskProxyless" => Method::Hcaptcha,
        "AltchaTask" | "AltchaTaskProxyless" => Method::Altcha,
        "CapTask" | "CapTaskProxyless" => Method::Cap,
        _ => return Err(ErrorCode::TaskNotSupported),
    };
    let site_key = text(t.get("websiteKey"));
    if method.needs_site_key() && site_key.is_none() {
        return Err(ErrorCode::GoogleKey);
    }
    let enterprise_payload = t.get("enterprisePayload").filter(|v| v.is_object()).map(Value::to_string);
    let options = TokenOptions {
        page_url: page_url(policy, text(t.get("websiteURL")).as_deref())?,
        site_key,
        action: text(t.get("pageAction")).or_else(|| text(t.get("action"))),
        data: text(t.get("recaptchaDataSValue")).or_else(|| text(t.get("cData"))).or(enterprise_payload),
        page_data: text(t.get("chlPageData")),
        invisible: switch(t.get("isInvisible"))?,
        enterprise: ty.starts_with("RecaptchaV2Enterprise") || switch(t.get("isEnterprise"))?,
        min_score: text(t.get("minScore")),
        user_agent: text(t.get("userAgent")),
        engine: engine(text(t.get("engine")).as_deref())?,
    };
    Ok(TaskSpec::Token { method, options })
}

/// `ImageToTextTask`: `body` (base64), `phrase`, `case`, `numeric` (0–4),
/// `math`, `minLength`, `maxLength` (0–20), `comment`.
fn image_spec(t: &Map<String, Value>) -> Result<TaskSpec, ErrorCode> {
    let body = text(t.get("body")).ok_or(ErrorCode::ZeroCaptchaFilesize)?;
    let image = base64img::decode(&body)?;
    if image.is_empty() {
        return Err(ErrorCode::ZeroCaptchaFilesize);
    }
    let min_len = small(t.get("minLength"), 20)?;
    let max_len = small(t.get("maxLength"), 20)?;
    if min_len > 0 && max_len > 0 && min_len > max_len {
        return Err(ErrorCode::BadParameters);
    }
    let options = ImageOptions {
        phrase: switch(t.get("phrase"))?,
        case_sensitive: switch(t.get("case"))?,
        numeric: small(t.get("numeric"), 4)?,
        calc: switch(t.get("math"))?,
        min_len,
        max_len,
        language: 0,
        lang: None,
        instructions: text(t.get("comment")).map(|c| c.chars().take(MAX_INSTRUCTIONS_CHARS).collect()),
    };
    Ok(TaskSpec::Image { image, options })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn absent_values() {
        for v in [json!(null), json!(false), json!(0), json!(""), json!("  ")] {
            assert_eq!(text(Some(&v)), None, "{v}");
            assert_eq!(switch(Some(&v)), Ok(false), "{v}");
            assert_eq!(small(Some(&v), 4), Ok(0), "{v}");
        }
        assert_eq!(switch(Some(&json!(true))), Ok(true));
        assert_eq!(switch(Some(&json!("yes"))), Err(ErrorCode::BadParameters));
        assert_eq!(small(Some(&json!(5)), 4), Err(ErrorCode::BadParameters));
        assert_eq!(small(Some(&json!(-1)), 4), Err(ErrorCode::BadParameters));
    }

    #[test]
    fn ids() {
        assert_eq!(task_id(Some(&json!(42))), Ok(42));
        assert_eq!(task_id(Some(&json!("42"))), Ok(42));
        assert_eq!(task_id(Some(&json!(0))), Err(ErrorCode::WrongCaptchaId));
        assert_eq!(task_id(Some(&json!(-3))), Err(ErrorCode::WrongCaptchaId));
        assert_eq!(task_id(Some(&json!(1.5))), Err(ErrorCode::WrongCaptchaId));
        assert_eq!(task_id(Some(&json!(9007199254740992u64))), Err(ErrorCode::WrongCaptchaId));
        assert_eq!(task_id(None), Err(ErrorCode::WrongCaptchaId));
    }

    #[test]
    fn image_task_options() {
        let t = obj(json!({"type": "ImageToTextTask", "body": "aGVsbG8gd29ybGQ=", "phrase": false, "case": true,
            "numeric": 1, "math": 0, "minLength": 4, "maxLength": null, "comment": "type the digits"}));
        let TaskSpec::Image { image, options } = task_spec(&t, &NetPolicy::strict()).expect("spec") else {
            panic!("not an image")
        };
        assert_eq!(image, b"hello world");
        assert!(options.case_sensitive && !options.phrase && !options.calc);
        assert_eq!((options.numeric, options.min_len, options.max_len), (1, 4, 0));
        assert_eq!(options.instructions.as_deref(), Some("type the digits"));
        let no_body = obj(json!({"type": "ImageToTextTask", "body": null}));
        assert_eq!(task_spec(&no_body, &NetPolicy::strict()).err(), Some(ErrorCode::ZeroCaptchaFilesize));
    }

    #[test]
    fn token_task_types() {
        let p = NetPolicy::strict();
        let spec = |v: Value| task_spec(&obj(v), &p);
        let TaskSpec::Token { method, options } = spec(json!({"type": "NoCaptchaTaskProxyless",
            "websiteURL": "https://a.example/", "websiteKey": "6Le", "isInvisible": true}))
        .expect("spec") else {
            panic!()
        };
        assert_eq!(method, Method::RecaptchaV2);
        assert!(options.invisible && !options.enterprise);
        let TaskSpec::Token { method, options } = spec(json!({"type": "RecaptchaV2EnterpriseTaskProxyless",
            "websiteURL": "https://a.example/", "websiteKey": "6Le", "enterprisePayload": {"s": "x"}}))
        .expect("spec") else {
            panic!()
        };
        assert_eq!(
            (method, options.enterprise, options.data.as_deref()),
            (Method::RecaptchaV2, true, Some(r#"{"s":"x"}"#))
        );
        let TaskSpec::Token { method, options } = spec(json!({"type": "RecaptchaV3TaskProxyless",
            "websiteURL": "https://a.example/", "websiteKey": "6Le", "minScore": 0.3, "pageAction": "login"}))
        .expect("spec") else {
            panic!()
        };
        assert_eq!(
            (method, options.min_score.as_deref(), options.action.as_deref()),
            (Method::RecaptchaV3, Some("0.3"), Some("login"))
        );
        let TaskSpec::Token { method, options } = spec(json!({"type": "TurnstileTaskProxyless",
            "websiteURL": "https://a.example/", "websiteKey": "0x4", "cData": "c", "chlPageData": "p"}))
        .expect("spec") else {
            panic!()
        };
        assert_eq!(
            (method, options.data.as_deref(), options.page_data.as_deref()),
            (Method::Turnstile, Some("c"), Some("p"))
        );
        let TaskSpec::Token { method, .. } =
            spec(json!({"type": "HCaptchaTask", "websiteURL": "https://a.example/", "websiteKey": "k"})).expect("spec")
        else {
            panic!()
        };
        assert_eq!(method, Method::Hcaptcha);
        let TaskSpec::Token { method, options } =
            spec(json!({"type": "CapTask", "websiteURL": "https://a.example/", "engine": "browser"})).expect("spec")
        else {
            panic!()
        };
        assert_eq!((method, options.engine), (Method::Cap, Some(captcha_core::Engine::Browser)));
        assert_eq!(spec(json!({"type": "AltchaTask"})).err(), Some(ErrorCode::PageUrl));
        assert_eq!(
            spec(json!({"type": "AltchaTask", "websiteURL": "http://10.0.0.1/"})).err(),
            Some(ErrorCode::PageUrl)
        );
        assert_eq!(
            spec(json!({"type": "TurnstileTask", "websiteURL": "https://a.example/"})).err(),
            Some(ErrorCode::GoogleKey)
        );
        assert_eq!(spec(json!({"type": "FunCaptchaTask"})).err(), Some(ErrorCode::TaskNotSupported));
        assert_eq!(spec(json!({"type": null})).err(), Some(ErrorCode::BadParameters));
    }

    #[test]
    fn solutions_per_type() {
        let solved = |method| TaskResult::Solved {
            method,
            answer: "A".into(),
            price_micros: 700,
            created_ms: 1_700_000_000_123,
            ended_ms: 1_700_000_004_999,
            attempts: 2,
        };
        let v = task_result_json(&solved(Method::Image), None).expect("ready");
        assert_eq!(v["solution"], json!({"text": "A"}));
        assert_eq!(
            (v["cost"].as_str(), v["createTime"].as_u64(), v["endTime"].as_u64()),
            (Some("0.0007"), Some(1_700_000_000), Some(1_700_000_004))
        );
        assert_eq!(v["solveCount"], 2);
        let v = task_result_json(&solved(Method::RecaptchaV2), None).expect("ready");
        assert_eq!(v["solution"]["gRecaptchaResponse"], "A");
        let v = task_result_json(&solved(Method::Turnstile), Some("UA/1")).expect("ready");
        assert_eq!(v["solution"], json!({"token": "A", "userAgent": "UA/1"}));
        let v = task_result_json(&solved(Method::Cap), None).expect("ready");
        assert_eq!(v["solution"], json!({"token": "A"}));
        assert_eq!(task_result_json(&TaskResult::NotReady, None), Ok(json!({"errorId": 0, "status": "processing"})));
        assert_eq!(task_result_body(&TaskResult::Unsolvable, None)["errorCode"], "ERROR_CAPTCHA_UNSOLVABLE");
    }
}
