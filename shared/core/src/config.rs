//! Prices, limits and timings: everything an operator may tune.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::domain::{Method, Pool};

/// The core's configuration. `Config::default()` is a working setup with the
/// OCR pool only; deployments override fields from flags or the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Price of one task per method, in micro-units. A method without a price
    /// is refused at submit with `TaskNotSupported`.
    pub prices: BTreeMap<Method, u64>,
    /// Pools that have workers in this deployment. A task whose pool is not
    /// here is refused at submit with `TaskNotSupported` (never queued forever).
    pub pools: BTreeSet<Pool>,
    /// Unfinished tasks one key may have at once → `NoSlotAvailable`.
    pub max_in_flight_per_key: u32,
    /// Sustained submits per key per second (token bucket) → `MaxUserTurn`.
    pub max_requests_per_sec: u32,
    /// Bucket size: how many submits a key may burst above the rate.
    pub request_burst: u32,
    /// Solve attempts before a task becomes unsolvable.
    pub max_attempts: u32,
    /// How long a finished result stays readable; afterwards `WrongCaptchaId`.
    pub result_retention: Duration,
    /// How long after submission a solved task may be reported.
    pub report_window: Duration,
    /// Smallest accepted image → `ZeroCaptchaFilesize`.
    pub min_image_bytes: usize,
    /// Largest accepted image → `TooBigCaptchaFilesize`.
    pub max_image_bytes: usize,
    /// How long a received queue message stays invisible to other workers.
    pub visibility_timeout: Duration,
    /// A task `solving` for longer than this is retried (or given up) by the sweeper.
    pub solve_timeout: Duration,
    /// A task unfinished this long after submission is made unsolvable by the sweeper.
    pub task_deadline: Duration,
    /// A hold still open this long after submission is reconciled with its task.
    pub hold_repair_after: Duration,
    /// Messages one `route_once` call takes from the intake queue.
    pub route_batch: usize,
    /// Records one `sweep_once` call handles per kind of work.
    pub sweep_batch: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            prices: BTreeMap::from([(Method::Image, 1_000)]),
            pools: BTreeSet::from([Pool::Ocr]),
            max_in_flight_per_key: 1_000,
            max_requests_per_sec: 1_000,
            request_burst: 1_000,
            max_attempts: 3,
            result_retention: Duration::from_secs(600),
            report_window: Duration::from_secs(15 * 60),
            min_image_bytes: 100,
            max_image_bytes: 600 * 1024,
            visibility_timeout: Duration::from_secs(30),
            solve_timeout: Duration::from_secs(30),
            task_deadline: Duration::from_secs(180),
            hold_repair_after: Duration::from_secs(300),
            route_batch: 64,
            sweep_batch: 256,
        }
    }
}

impl Config {
    /// The price of a method if this deployment has a pool that solves it.
    pub fn offer(&self, method: Method) -> Option<u64> {
        if method.pools().iter().any(|p| self.pools.contains(p)) {
            self.prices.get(&method).copied()
        } else {
            None
        }
    }
}

pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
