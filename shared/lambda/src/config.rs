//! Settings from the environment: one [`Settings::from_env`] for all six
//! functions (the template gives every function the same variables, see
//! `infra/README.md`).

use std::collections::BTreeSet;
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
        for m in Method::ALL.iter().filter(|m| m.is_token()) {
            core.prices.insert(*m, token_price);
        }
        core.pools = BTreeSet::from([Pool::Ocr, Pool::Browser]);
        core.max_in_flight_per_key = small("CAPTCHA_MAX_IN_FLIGHT", 1000)?.max(1);
        let rps = small("CAPTCHA_MAX_RPS", 1000)?;
        core.max_requests_per_sec = rps;
        core.request_burst = rps;
        core.result_retention = Duration::from_secs(number("CAPTCHA_RESULT_RETENTION_SECS", 600)?);
        core.max_attempts = small("CAPTCHA_MAX_ATTEMPTS", 3)?.max(1);

        let net_policy = match get("CAPTCHA_ALLOW_PRIVATE_NETWORK") {
            None => NetPolicy::strict(),
            Some(v) => NetPolicy::parse_list(&v).map_err(|reason| EnvError::Invalid {
                name: "CAPTCHA_ALLOW_PRIVATE_NETWORK".into(),
                reason,
            })?,
        };
        Ok(Settings { core, net_policy })
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
        ])
        .unwrap();
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
    fn refuses_malformed_values() {
        for (k, v) in [
            ("CAPTCHA_PRICE_IMAGE", "cheap"),
            ("CAPTCHA_MAX_IN_FLIGHT", "-1"),
            ("CAPTCHA_MAX_ATTEMPTS", "99999999999"),
            ("CAPTCHA_ALLOW_PRIVATE_NETWORK", "localhost"),
        ] {
            assert!(matches!(settings(&[(k, v)]), Err(EnvError::Invalid { .. })), "{k}={v}");
        }
    }
}
