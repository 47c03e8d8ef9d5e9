//! `res.php`: results, balance and reports.

use captcha_core::{format_money, CaptchaService, ErrorCode, PingbackOp, Report, TaskId, TaskResult};
use captcha_netguard::NetPolicy;

use crate::params::Params;
use crate::render::Reply;

/// Ids at or above this cannot exist (JS clients parse them as doubles).
const MAX_ID: u64 = 1 << 53;

/// What `action=` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Get,
    Get2,
    GetBalance,
    Report(Report),
    /// `add_pingback`, `get_pingback`, `del_pingback`.
    Pingback(PingbackAction),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PingbackAction {
    Add,
    Get,
    Del,
}

impl Action {
    /// Missing or unknown → `ERROR_EMPTY_ACTION`.
    pub(crate) fn parse(p: &Params) -> Result<Action, ErrorCode> {
        let action = p.get("action").ok_or(ErrorCode::EmptyAction)?.to_ascii_lowercase();
        Ok(match action.as_str() {
            "get" => Action::Get,
            "get2" => Action::Get2,
            "getbalance" => Action::GetBalance,
            "reportbad" => Action::Report(Report::Bad),
            "reportgood" => Action::Report(Report::Good),
            "add_pingback" => Action::Pingback(PingbackAction::Add),
            "get_pingback" => Action::Pingback(PingbackAction::Get),
            "del_pingback" => Action::Pingback(PingbackAction::Del),
            _ => return Err(ErrorCode::EmptyAction),
        })
    }
}

/// A task id: digits only (else `ERROR_WRONG_ID_FORMAT`); digits that cannot
/// name a task (0, ≥ 2^53, overflow) → `ERROR_WRONG_CAPTCHA_ID`.
pub(crate) fn parse_id(v: Option<&str>) -> Result<TaskId, ErrorCode> {
    let v = v.map(str::trim).filter(|v| !v.is_empty()).ok_or(ErrorCode::WrongIdFormat)?;
    if !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ErrorCode::WrongIdFormat);
    }
    v.parse::<u64>().ok().filter(|id| (1..MAX_ID).contains(id)).ok_or(ErrorCode::WrongCaptchaId)
}

/// Errors about the key or the caller rather than one task: for `ids=` they
/// answer the whole request instead of being repeated per id.
fn is_caller_error(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::WrongUserKey
            | ErrorCode::KeyDoesNotExist
            | ErrorCode::IpBanned
            | ErrorCode::IpNotAllowed
            | ErrorCode::MaxUserTurn
    )
}

/// A poll that failed on our side is answered `CAPCHA_NOT_READY`, so every
/// client simply polls again instead of giving up on a task that may be fine.
fn poll_result(r: Result<TaskResult, ErrorCode>, id: TaskId) -> Result<TaskResult, ErrorCode> {
    match r {
        Err(ErrorCode::Internal) => {
            tracing::warn!(id, "result lookup failed internally; answering CAPCHA_NOT_READY");
            Ok(TaskResult::NotReady)
        }
        other => other,
    }
}

/// Answers one `res.php` request whose parameters are parsed.
pub(crate) async fn handle(service: &dyn CaptchaService, p: &Params, max_ids: usize, policy: &NetPolicy) -> Reply {
    match respond(service, p, max_ids, policy).await {
        Ok(reply) => reply,
        Err(code) => Reply::Error(code),
    }
}

async fn respond(
    service: &dyn CaptchaService,
    p: &Params,
    max_ids: usize,
    policy: &NetPolicy,
) -> Result<Reply, ErrorCode> {
    let action = Action::parse(p)?;
    let key = p.get("key").ok_or(ErrorCode::WrongUserKey)?;
    if let Action::Pingback(pa) = action {
        return pingback(service, key, p, pa, policy).await;
    }
    match action {
        Action::Get if p.get("ids").is_some() => get_many(service, key, p.get("ids").unwrap_or(""), max_ids).await,
        Action::Get | Action::Get2 => {
            let id = parse_id(p.get("id"))?;
            match poll_result(service.result(key, id).await, id)? {
                TaskResult::NotReady => Err(ErrorCode::CaptchaNotReady),
                TaskResult::Unsolvable => Err(ErrorCode::CaptchaUnsolvable),
                TaskResult::Solved { answer, .. } if action == Action::Get => Ok(Reply::Ok(answer)),
                TaskResult::Solved { answer, price_micros, .. } => {
                    Ok(Reply::OkPrice { answer, price: format_money(price_micros) })
                }
            }
        }
        Action::GetBalance => Ok(Reply::Bare(format_money(service.balance(key).await?))),
        Action::Report(report) => {
            let id = parse_id(p.get("id"))?;
            service.report(key, id, report).await?;
            Ok(Reply::Bare("OK_REPORT_RECORDED".into()))
        }
        Action::Pingback(_) => Err(ErrorCode::EmptyAction),
    }
}

/// `action=get&ids=1,2,3`: each id's answer, `CAPCHA_NOT_READY` or error code,
/// joined by `|`, in the order asked. A malformed id fails the whole request
/// (`ERROR_WRONG_ID_FORMAT`), as does a key-level error.
async fn get_many(service: &dyn CaptchaService, key: &str, ids: &str, max_ids: usize) -> Result<Reply, ErrorCode> {
    let mut parsed = Vec::new();
    for raw in ids.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        parsed.push(match parse_id(Some(raw)) {
            Ok(id) => Ok(id),
            Err(ErrorCode::WrongIdFormat) => return Err(ErrorCode::WrongIdFormat),
            Err(other) => Err(other),
        });
    }
    if parsed.is_empty() {
        return Err(ErrorCode::WrongIdFormat);
    }
    if parsed.len() > max_ids {
        return Err(ErrorCode::BadParameters);
    }
    let mut answers = Vec::with_capacity(parsed.len());
    for id in parsed {
        let piece = match id {
            Err(code) => code.code().to_string(),
            Ok(id) => match poll_result(service.result(key, id).await, id) {
                Ok(TaskResult::Solved { answer, .. }) => answer,
                Ok(TaskResult::NotReady) => ErrorCode::CaptchaNotReady.code().to_string(),
                Ok(TaskResult::Unsolvable) => ErrorCode::CaptchaUnsolvable.code().to_string(),
                Err(code) if is_caller_error(code) => return Err(code),
                Err(code) => code.code().to_string(),
            },
        };
        answers.push(piece);
    }
    Ok(Reply::Bare(answers.join("|")))
}

/// `add_pingback&addr=URL` → `OK_PINGBACK`; `get_pingback` → `OK|url|url`
/// (`OK|` when none); `del_pingback&addr=URL|all` → `OK_PINGBACK`. A missing,
/// malformed or refused address (private, loopback, … unless allowed) is
/// `ERROR_IP_ADDRES`; more than the core's maximum is `ERROR_BAD_PARAMETERS`.
async fn pingback(
    service: &dyn CaptchaService,
    key: &str,
    p: &Params,
    action: PingbackAction,
    policy: &NetPolicy,
) -> Result<Reply, ErrorCode> {
    let addr = p.get("addr");
    let op = match action {
        PingbackAction::Get => PingbackOp::List,
        PingbackAction::Add => PingbackOp::Add(crate::submit::callback_url(policy, addr)?.ok_or(ErrorCode::IpAddres)?),
        PingbackAction::Del if addr.is_some_and(|a| a.eq_ignore_ascii_case("all")) => PingbackOp::RemoveAll,
        PingbackAction::Del => PingbackOp::Remove(addr.ok_or(ErrorCode::IpAddres)?.trim().to_string()),
    };
    let urls = service.pingbacks(key, op.clone()).await?;
    Ok(match op {
        PingbackOp::List => Reply::Ok(urls.join("|")),
        _ => Reply::Bare("OK_PINGBACK".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        let mut p = Params::default();
        for (k, v) in pairs {
            p.set(k, v);
        }
        p
    }

    #[test]
    fn ids() {
        assert_eq!(parse_id(Some("42")), Ok(42));
        assert_eq!(parse_id(Some(" 42 ")), Ok(42));
        assert_eq!(parse_id(Some("9007199254740991")), Ok((1 << 53) - 1));
        assert_eq!(parse_id(Some("9007199254740992")), Err(ErrorCode::WrongCaptchaId));
        assert_eq!(parse_id(Some("99999999999999999999999")), Err(ErrorCode::WrongCaptchaId));
        assert_eq!(parse_id(Some("0")), Err(ErrorCode::WrongCaptchaId));
        assert_eq!(parse_id(Some("12a")), Err(ErrorCode::WrongIdFormat));
        assert_eq!(parse_id(Some("-1")), Err(ErrorCode::WrongIdFormat));
        assert_eq!(parse_id(Some("")), Err(ErrorCode::WrongIdFormat));
        assert_eq!(parse_id(None), Err(ErrorCode::WrongIdFormat));
    }

    #[test]
    fn actions() {
        let a = |v: &str| Action::parse(&params(&[("action", v)]));
        assert_eq!(a("get"), Ok(Action::Get));
        assert_eq!(a("GET2"), Ok(Action::Get2));
        assert_eq!(a("getbalance"), Ok(Action::GetBalance));
        assert_eq!(a("reportbad"), Ok(Action::Report(Report::Bad)));
        assert_eq!(a("reportgood"), Ok(Action::Report(Report::Good)));
        assert_eq!(a("add_pingback"), Ok(Action::Pingback(PingbackAction::Add)));
        assert_eq!(a("get_pingback"), Ok(Action::Pingback(PingbackAction::Get)));
        assert_eq!(a("del_pingback"), Ok(Action::Pingback(PingbackAction::Del)));
        assert_eq!(a("nonsense"), Err(ErrorCode::EmptyAction));
        assert_eq!(a(""), Err(ErrorCode::EmptyAction));
        assert_eq!(Action::parse(&Params::default()), Err(ErrorCode::EmptyAction));
    }
}
