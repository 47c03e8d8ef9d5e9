//! Settings from the environment: one [`Settings::from_env`] for all seven
//! functions (the template gives every function the same variables, see
//! `infra/README.md`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use captcha_aws::EnvError;
use captcha_core::{parse_money, Config, Method, Pool};
use captcha_netguard::NetPolicy;

/// What a function needs besides the AWS resource names (those are read by
/// `captcha_aws::AwsStores::from_env`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The core's configuration. Serverless pools are `{ocr, browser}`: the
    /// stack has no native queue, so ALTCHA and Cap go to the browser queue,
    /// whose function tries the native proof-of-work solver first.
    pub core: Config,
    /// Which addresses page URLs and callbacks may reach
    /// (`CAPTCHA_ALLOW_PRIVATE_NETWORK`, a comma list of CIDRs; public only by default).
    pub net_policy: NetPolicy,
    /// The browser pool of `captcha-solve-browser` (`CAPTCHA_CHROMIUM_PATH`
    /// set; the function checks the file exists). `None`: native solvers only.
    pub browser: Option<BrowserSettings>,
}

/// `captcha-solve-browser`'s Chromium (from a layer in AWS, see `infra/README.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserSettings {
    /// `CAPTCHA_CHROMIUM_PATH`.
    pub chromium: PathBuf,
    /// `CAPTCHA_BROWSER_PAGES` (default 2): pages one instance drives at once.
    pub pages: usize,
    /// `CAPTCHA_BROWSER_DEADLINE_SECS` (default 60): one browser attempt.
    pub deadline: Duration,
    /// `CAPTCHA_CHROMIUM_SANDBOX` (`0`/`1`; unset: on unless running as
    /// root). Lambda has no user namespaces, so the template sets `0` there
    /// and relies on the per-instance microVM.
    pub sandbox: Option<bool>,
    /// `CAPTCHA_CHROMIUM_HOST_RESOLVER_RULES`: Chromium's `--host-resolver-rules`
    /// (the tests confine it to 127.0.0.1 with `MAP * ~NOTFOUND , EXCLUDE 127.0.0.1`).
    pub host_resolver_rules: Option<String>,
}

impl Settings {
    /// From the process environment.
    pub fn from_env() -> Result<Settings, EnvError> {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }

    /// From any lookup (tests pass a map). Unset or empty variables take the
    /// template's defaults.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Settings, EnvError> {
        let get = |name: &str| get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let invalid = |name: &str, v: &str, what: &str| EnvError::Invalid {
            name: name.to_string(),
            reason: format!("{v:?} is not {what}"),
        };
        let money = |name: &str, default: u64| -> Result<u64, EnvError> {
            match get(name) {
                None => Ok(default),
                Some(v) => parse_money(&v).ok_or_else(|| invalid(name, &v, "an amount like 0.001")),
            }
        };
        let number = |name: &str, default: u64| -> Result<u64, EnvError> {
            match get(name) {
                None => Ok(default),
                Some(v) => v.parse().map_err(|_| invalid(name, &v, "a whole number")),
            }
        };
        let small = |name: &str, default: u64| -> Result<u32, EnvError> {
            let n = number(name, default)?;
            u32::try_from(n).map_err(|_| invalid(name, &n.to_string(), "below 2^32"))
        };

        let mut core = Config::default();
        core.prices.insert(Method::Image, money("CAPTCHA_PRICE_IMAGE", 1_000)?);
        let token_price = money("CAPTCHA_PRICE_TOKEN", 3_000)?;
        // Widgets only a browser can solve are offered when the stack deploys
        // Chromium (the template sets this from its layer parameter);
        // otherwise they are refused at submit with ERROR_TASK_NOT_SUPPORTED.
        let browser_widgets = match get("CAPTCHA_BROWSER_WIDGETS").as_deref() {
            None | Some("1" | "true") => true,
            Some("0" | "false") => false,
            Some(v) => return Err(invalid("CAPTCHA_BROWSER_WIDGETS", v, "0, 1, true or false")),
        };
        for m in Method::ALL.iter().filter(|m| m.is_token()) {
            if browser_widgets || m.pools().contains(&Pool::Native) {
                core.prices.insert(*m, token_price);
            }
        }
        core.pools = BTreeSet::from([Pool::Ocr, Pool::Browser]);
        core.max_in_flight_per_key = small("CAPTCHA_MAX_IN_FLIGHT", 1000)?.max(1);
        let rps = small("CAPTCHA_MAX_RPS", 1000)?;
        core.max_requests_per_sec = rps;
        core.request_burst = rps;
        core.result_retention = Duration::from_secs(number("CAPTCHA_RESULT_RETENTION_SECS", 600)?);
        core.max_attempts = small("CAPTCHA_MAX_ATTEMPTS", 3)?.max(1);
        // The sweeper's clocks. A task `solving` longer than the solve timeout
        // was dropped by a dead solver (its message comes back but finds the
        // task claimed), so the timeout must exceed the slowest solve
        // function's Lambda timeout (solve-browser: 180 s).
        core.solve_timeout = Duration::from_secs(number("CAPTCHA_SOLVE_TIMEOUT_SECS", 240)?.max(1));
        core.task_deadline = Duration::from_secs(number("CAPTCHA_TASK_DEADLINE_SECS", 900)?.max(1));
        core.hold_repair_after = Duration::from_secs(number("CAPTCHA_HOLD_REPAIR_SECS", 1200)?.max(1));

        let browser = match get("CAPTCHA_CHROMIUM_PATH") {
            None => None,
            Some(path) => Some(BrowserSettings {
                chromium: PathBuf::from(path),
                pages: small("CAPTCHA_BROWSER_PAGES", 2)?.clamp(1, 16) as usize,
                deadline: Duration::from_secs(number("CAPTCHA_BROWSER_DEADLINE_SECS", 60)?.clamp(5, 900)),
                sandbox: match get("CAPTCHA_CHROMIUM_SANDBOX").as_deref() {
                    None => None,
                    Some("1" | "true") => Some(true),
                    Some("0" | "false") => Some(false),
                    Some(v) => return Err(invalid("CAPTCHA_CHROMIUM_SANDBOX", v, "0, 1, true or false")),
                },
                host_resolver_rules: get("CAPTCHA_CHROMIUM_HOST_RESOLVER_RULES"),
            }),
        };

        let net_policy = match get("CAPTCHA_ALLOW_PRIVATE_NETWORK") {
            None => NetPolicy::strict(),
            Some(v) => NetPolicy::parse_list(&v)
                .map_err(|reason| EnvError::Invalid { name: "CAPTCHA_ALLOW_PRIVATE_NETWORK".into(), reason })?,
        };
        Ok(Settings { core, net_policy, browser })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, EnvError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_template() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.core.prices[&Method::Image], 1_000);
        assert_eq!(s.core.prices[&Method::Altcha], 3_000);
        assert_eq!(s.core.max_attempts, 3);
        assert_eq!(s.core.pools, BTreeSet::from([Pool::Ocr, Pool::Browser]));
        assert_eq!(s.core.offer(Method::Cap), Some(3_000));
        assert!(s.core.solve_timeout > Duration::from_secs(180), "beyond solve-browser's Lambda timeout");
        assert!(s.browser.is_none());
    }

    #[test]
    fn reads_every_variable() {
        let s = settings(&[
            ("CAPTCHA_PRICE_IMAGE", "0.002"),
            ("CAPTCHA_PRICE_TOKEN", "0.01"),
            ("CAPTCHA_MAX_IN_FLIGHT", "7"),
            ("CAPTCHA_MAX_RPS", "0"),
            ("CAPTCHA_RESULT_RETENTION_SECS", "900"),
            ("CAPTCHA_MAX_ATTEMPTS", "2"),
            ("CAPTCHA_ALLOW_PRIVATE_NETWORK", "127.0.0.0/8, ::1/128"),
            ("CAPTCHA_SOLVE_TIMEOUT_SECS", "5"),
            ("CAPTCHA_TASK_DEADLINE_SECS", "60"),
            ("CAPTCHA_HOLD_REPAIR_SECS", "120"),
            ("CAPTCHA_CHROMIUM_PATH", "/opt/chromium/chromium"),
            ("CAPTCHA_BROWSER_PAGES", "3"),
            ("CAPTCHA_CHROMIUM_SANDBOX", "0"),
        ])
        .unwrap();
        assert_eq!(s.core.solve_timeout, Duration::from_secs(5));
        assert_eq!(s.core.task_deadline, Duration::from_secs(60));
        assert_eq!(s.core.hold_repair_after, Duration::from_secs(120));
        let b = s.browser.clone().unwrap();
        assert_eq!(
            (b.chromium, b.pages, b.deadline, b.sandbox),
            ("/opt/chromium/chromium".into(), 3, Duration::from_secs(60), Some(false))
        );
        assert_eq!(b.host_resolver_rules, None);
        let bad = settings(&[("CAPTCHA_CHROMIUM_PATH", "/c"), ("CAPTCHA_CHROMIUM_SANDBOX", "maybe")]);
        assert!(matches!(bad, Err(EnvError::Invalid { .. })));
        assert_eq!(s.core.prices[&Method::Image], 2_000);
        assert_eq!(s.core.prices[&Method::Turnstile], 10_000);
        assert_eq!(s.core.max_in_flight_per_key, 7);
        assert_eq!(s.core.max_requests_per_sec, 0);
        assert_eq!(s.core.result_retention, Duration::from_secs(900));
        assert_eq!(s.core.max_attempts, 2);
        assert!(s.net_policy.check_ip("127.0.0.1".parse().unwrap()).is_ok());
        assert!(settings(&[]).unwrap().net_policy.check_ip("127.0.0.1".parse().unwrap()).is_err());
    }

    #[test]
    fn without_chromium_browser_only_widgets_are_not_offered() {
        let s = settings(&[("CAPTCHA_BROWSER_WIDGETS", "0")]).unwrap();
        assert_eq!(s.core.offer(Method::Turnstile), None);
        assert_eq!(s.core.offer(Method::RecaptchaV2), None);
        assert_eq!(s.core.offer(Method::Hcaptcha), None);
        assert_eq!(s.core.offer(Method::Altcha), Some(3_000), "the native solver still takes ALTCHA");
        assert_eq!(s.core.offer(Method::Cap), Some(3_000));
        assert_eq!(settings(&[("CAPTCHA_BROWSER_WIDGETS", "1")]).unwrap().core.offer(Method::Turnstile), Some(3_000));
    }

    #[test]
    fn refuses_malformed_values() {
        for (k, v) in [
            ("CAPTCHA_PRICE_IMAGE", "cheap"),
            ("CAPTCHA_MAX_IN_FLIGHT", "-1"),
            ("CAPTCHA_MAX_ATTEMPTS", "99999999999"),
            ("CAPTCHA_ALLOW_PRIVATE_NETWORK", "localhost"),
            ("CAPTCHA_SOLVE_TIMEOUT_SECS", "soon"),
            ("CAPTCHA_BROWSER_WIDGETS", "maybe"),
        ] {
            assert!(matches!(settings(&[(k, v)]), Err(EnvError::Invalid { .. })), "{k}={v}");
        }
    }
}
