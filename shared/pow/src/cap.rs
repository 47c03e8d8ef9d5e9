//! Cap (widget `@cap.js/widget` 0.1.x, server `@cap.js/server` 4.x). What
//! the widget does, and so what this module does:
//!
//! 1. `POST <endpoint>challenge` → `{challenge: {c, s, d}, token, expires}`.
//! 2. For `i` in `1..=c`: `salt_i = prng(token + i, s)`, `target_i =
//!    prng(token + i + "d", d)`, where `prng` seeds a 32-bit xorshift
//!    (13/17/5) with FNV-1a of the seed string and concatenates its outputs as
//!    8-digit hex. (An older server format sends the `[salt, target]` list
//!    itself.)
//! 3. Find for each a nonce `n` (decimal) with `hex(SHA-256(salt_i + n))`
//!    starting with `target_i`.
//! 4. `POST <endpoint>redeem {token, solutions}` → `{success, token, expires}`;
//!    the redeemed token is the answer (form field `cap-token`).
//!
//! Challenges with `instrumentation` (a script the widget runs in a sandboxed
//! frame) or the `format: 2` list are not proofs of work alone: they give
//! [`PowError::NotReadable`].

use std::time::{Duration, Instant};

use captcha_netguard::{GuardedClient, Url};
use serde_json::{json, Value};

use crate::engine::{Algorithm, CounterMode, Prefix, Task};
use crate::{
    fetch, html, parse_json, resolve_url, run_blocking, stop_error, PowError, Scheme, Solution, SolveOptions, Widget,
};

/// What the page says about its Cap widget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapWidget {
    /// `data-cap-api-endpoint`, `None` when the page uses a custom fetch.
    pub endpoint: Option<String>,
    /// `data-cap-hidden-field-name`, default `cap-token`.
    pub field: String,
}

/// The first `<cap-widget>` on the page, if any.
pub fn find(page: &str) -> Option<CapWidget> {
    let tag = html::find_tag(page, "cap-widget")?;
    let nonempty = |v: Option<&str>| v.map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
    Some(CapWidget {
        endpoint: nonempty(tag.get("data-cap-api-endpoint")),
        field: nonempty(tag.get("data-cap-hidden-field-name")).unwrap_or_else(|| "cap-token".to_string()),
    })
}

/// Cap's PRNG: FNV-1a (32-bit) of the seed's UTF-16 code units seeds a
/// xorshift32; outputs are concatenated as 8-digit hex, cut to `len`.
pub fn prng(seed: &str, len: usize) -> String {
    let mut h: u32 = 2_166_136_261;
    for unit in seed.encode_utf16() {
        h ^= u32::from(unit);
        h = h.wrapping_mul(16_777_619);
    }
    let mut state = h;
    let mut out = String::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        out.push_str(&format!("{state:08x}"));
    }
    out.truncate(len);
    out
}

/// Largest challenge the solver accepts: count, salt length, target length.
pub const MAX_COUNT: u64 = 10_000;
pub const MAX_SIZE: u64 = 1_024;
pub const MAX_DIFFICULTY: u64 = 12;

/// The `(salt, target)` list for a challenge response, as the widget builds it.
pub fn puzzles(resp: &Value) -> Result<(String, Vec<(String, String)>), PowError> {
    if resp.get("instrumentation").is_some_and(|v| !v.is_null()) {
        return Err(PowError::NotReadable("the Cap challenge carries an instrumentation script".into()));
    }
    if resp.get("format").and_then(Value::as_u64) == Some(2) {
        return Err(PowError::Unsupported("Cap challenge format 2".into()));
    }
    let token = resp.get("token").and_then(Value::as_str).filter(|t| !t.is_empty() && t.len() <= 1024);
    let token = token.ok_or_else(|| PowError::BadChallenge("no token".into()))?.to_string();
    let challenge = resp.get("challenge").ok_or_else(|| PowError::BadChallenge("no challenge".into()))?;
    let list = if let Some(list) = challenge.as_array() {
        if list.len() as u64 > MAX_COUNT {
            return Err(PowError::BadChallenge("too many challenges".into()));
        }
        list.iter()
            .map(|pair| match pair.as_array().map(Vec::as_slice) {
                Some([Value::String(s), Value::String(t)])
                    if s.len() as u64 <= MAX_SIZE && t.len() as u64 <= MAX_DIFFICULTY =>
                {
                    Ok((s.clone(), t.clone()))
                }
                _ => Err(PowError::BadChallenge("bad [salt, target] pair".into())),
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        let num = |k: &str, max: u64| match challenge.get(k).and_then(Value::as_u64) {
            Some(n) if n >= 1 && n <= max => Ok(n),
            _ => Err(PowError::BadChallenge(format!("challenge.{k} must be an integer in 1..={max}"))),
        };
        let (c, s, d) = (num("c", MAX_COUNT)?, num("s", MAX_SIZE)? as usize, num("d", MAX_DIFFICULTY)? as usize);
        (1..=c).map(|i| (prng(&format!("{token}{i}"), s), prng(&format!("{token}{i}d"), d))).collect()
    };
    Ok((token, list))
}

fn task(salt: &str, target: &str, max_counter: u64) -> Result<Task, PowError> {
    let prefix =
        Prefix::parse(target).ok_or_else(|| PowError::BadChallenge(format!("target {target:?} is not hex")))?;
    Ok(Task {
        algorithm: Algorithm::Sha256,
        cost: 1,
        key_len: 32,
        salt: Vec::new(),
        nonce: salt.as_bytes().to_vec(),
        mode: CounterMode::Decimal,
        prefix,
        // The widget's nonces are JS numbers: keep them exact.
        max_counter: max_counter.min((1 << 53) - 1),
    })
}

/// Solves every puzzle in order; returns the nonces and the attempts made.
pub fn solve_all(
    list: &[(String, String)],
    threads: usize,
    max_attempts: u64,
    cancelled: &(dyn Fn() -> bool + Sync),
    deadline: Option<Instant>,
) -> Result<(Vec<u64>, u64), (crate::engine::Stop, u64)> {
    if threads > 1 && list.len() >= threads * 4 {
        return solve_spread(list, threads, max_attempts, cancelled, deadline);
    }
    let mut nonces = Vec::with_capacity(list.len());
    let mut total = 0u64;
    for (salt, target) in list {
        // Targets were validated as hex when the list was built.
        let Ok(t) = task(salt, target, max_attempts.saturating_sub(1)) else {
            return Err((crate::engine::Stop::Exhausted, total));
        };
        match t.search(threads, cancelled, deadline) {
            Ok((f, n)) => {
                nonces.push(f.counter);
                total += n;
            }
            Err(stop) => return Err((stop, total)),
        }
    }
    Ok((nonces, total))
}

/// Many small puzzles: each thread takes whole puzzles in turn (no
/// coordination inside a puzzle), the first failure stops the rest.
fn solve_spread(
    list: &[(String, String)],
    threads: usize,
    max_attempts: u64,
    cancelled: &(dyn Fn() -> bool + Sync),
    deadline: Option<Instant>,
) -> Result<(Vec<u64>, u64), (crate::engine::Stop, u64)> {
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use std::sync::Mutex;
    let next = AtomicUsize::new(0);
    let total = AtomicU64::new(0);
    let failed = AtomicBool::new(false);
    let stop: Mutex<Option<crate::engine::Stop>> = Mutex::new(None);
    let nonces: Vec<AtomicU64> = list.iter().map(|_| AtomicU64::new(0)).collect();
    let stop_all = || cancelled() || failed.load(Ordering::Relaxed);
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some((salt, target)) = list.get(i) else { return };
        let result = task(salt, target, max_attempts.saturating_sub(1))
            .map_err(|_| crate::engine::Stop::Exhausted)
            .and_then(|t| t.search(1, &stop_all, deadline));
        match result {
            Ok((f, n)) => {
                nonces[i].store(f.counter, Ordering::Relaxed);
                total.fetch_add(n, Ordering::Relaxed);
            }
            Err(why) => {
                // A puzzle stopped because another failed reports Cancelled: keep the first cause.
                stop.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(why);
                failed.store(true, Ordering::Relaxed);
                return;
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(work);
        }
        work();
    });
    let total = total.load(Ordering::Relaxed);
    if let Some(why) = stop.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err((why, total));
    }
    Ok((nonces.into_iter().map(AtomicU64::into_inner).collect(), total))
}

pub(crate) async fn solve(
    client: &GuardedClient,
    page: &Url,
    w: CapWidget,
    opts: &SolveOptions,
) -> Result<Solution, PowError> {
    let endpoint = w.endpoint.ok_or_else(|| PowError::NotReadable("no data-cap-api-endpoint on the widget".into()))?;
    let challenge_url = resolve_url(client, page, &format!("{endpoint}challenge"))?;
    let redeem_url = resolve_url(client, page, &format!("{endpoint}redeem"))?;
    let body = fetch(client, reqwest::Method::POST, challenge_url.as_str(), None, opts.max_json_bytes).await?;
    let resp = parse_json(challenge_url.as_str(), &body.bytes)?;
    if let Some(e) = resp.get("error").and_then(Value::as_str) {
        return Err(PowError::Rejected(format!("challenge: {e}")));
    }
    let (token, list) = puzzles(&resp)?;
    for (_, target) in &list {
        if Prefix::parse(target).is_none() {
            return Err(PowError::BadChallenge(format!("target {target:?} is not hex")));
        }
    }
    let threads = opts.thread_count();
    let deadline = Instant::now() + opts.time_limit;
    let max_attempts = opts.max_attempts;
    let start = Instant::now();
    let result =
        run_blocking(opts, move |cancelled| solve_all(&list, threads, max_attempts, cancelled, Some(deadline))).await?;
    let compute = start.elapsed();
    let (solutions, attempts) = result.map_err(|(stop, n)| stop_error(stop, n, opts))?;
    let req = json!({ "token": token, "solutions": solutions });
    let body = fetch(client, reqwest::Method::POST, redeem_url.as_str(), Some(&req), opts.max_json_bytes).await?;
    let resp = parse_json(redeem_url.as_str(), &body.bytes)?;
    if resp.get("success").and_then(Value::as_bool) != Some(true) {
        let why = resp.get("message").or_else(|| resp.get("error")).and_then(Value::as_str).unwrap_or("no success");
        return Err(PowError::Rejected(why.chars().take(200).collect()));
    }
    let token = resp.get("token").and_then(Value::as_str).filter(|t| !t.is_empty() && t.len() <= 4096);
    let token = token.ok_or_else(|| PowError::Rejected("redeem answered without a token".into()))?;
    Ok(Solution {
        widget: Widget::Cap,
        scheme: Scheme::Cap,
        token: token.to_string(),
        field: w.field,
        attempts,
        compute,
        elapsed: Duration::ZERO,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn prng_matches_cap_server() {
        // Values from @cap.js/server 4.0.5's prng under Node 20.
        assert_eq!(prng("abc1", 32), "a240feb00f42af1b0e9dab2bc4ea4c37");
        assert_eq!(prng("abc1d", 4), "e6e4");
        assert_eq!(
            prng("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca4950", 32),
            "4732c78ce7aa45cd4d65fac4b59d789a"
        );
        assert_eq!(prng("x", 5), "948de");
        assert_eq!(prng("", 8), "4622a677");
    }

    #[test]
    fn derives_and_solves_small_challenge() {
        let resp = json!({"challenge": {"c": 3, "s": 32, "d": 3}, "token": "abc", "expires": 0});
        let (token, list) = puzzles(&resp).unwrap();
        assert_eq!(token, "abc");
        assert_eq!(list.len(), 3);
        assert_eq!(list[0], (prng("abc1", 32), prng("abc1d", 3)));
        let many = puzzles(&json!({"challenge": {"c": 20, "s": 16, "d": 3}, "token": "many"})).unwrap().1;
        for list in [&list, &many] {
            let (nonces, _) = solve_all(list, 2, 1 << 30, &|| false, None).unwrap();
            assert_eq!(nonces.len(), list.len());
            for ((salt, target), n) in list.iter().zip(nonces) {
                let h = hex::encode(Sha256::digest(format!("{salt}{n}")));
                assert!(h.starts_with(target.as_str()), "{h} / {target}");
            }
        }
        assert!(solve_all(&many, 2, 2, &|| false, None).is_err());
    }

    #[test]
    fn refuses_instrumentation_and_bad_input() {
        let r = json!({"challenge": {"c": 1, "s": 8, "d": 1}, "token": "t", "instrumentation": "eJw="});
        assert!(matches!(puzzles(&r), Err(PowError::NotReadable(_))));
        for bad in [
            json!({"challenge": {"c": 0, "s": 8, "d": 1}, "token": "t"}),
            json!({"challenge": {"c": 1, "s": 8, "d": 99}, "token": "t"}),
            json!({"challenge": {"c": 1, "s": 8, "d": 1}}),
            json!({"challenge": [["salt", 5]], "token": "t"}),
            json!("nope"),
        ] {
            assert!(matches!(puzzles(&bad), Err(PowError::BadChallenge(_))), "{bad}");
        }
        let list = json!({"challenge": [["salt", "0a"]], "token": "t"});
        assert_eq!(puzzles(&list).unwrap().1, vec![("salt".to_string(), "0a".to_string())]);
    }

    #[test]
    fn finds_endpoint() {
        let w =
            find(r#"<cap-widget data-cap-api-endpoint="/cap/" data-cap-hidden-field-name="t"></cap-widget>"#).unwrap();
        assert_eq!(w.endpoint.as_deref(), Some("/cap/"));
        assert_eq!(w.field, "t");
        assert_eq!(find("<cap-widget></cap-widget>").unwrap().endpoint, None);
    }
}
