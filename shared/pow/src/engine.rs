//! The proof-of-work search shared by every widget: derive a key from
//! `salt`, `nonce` and a counter, and find a counter whose key starts with a
//! hex prefix.
//!
//! ALTCHA v2 is this directly (altcha-lib `deriveKey` + `PasswordBuffer`);
//! ALTCHA v1 is SHA-256 of `salt + decimal(n)` against the whole challenge
//! hash; Cap is SHA-256 of `salt + decimal(n)` against a hex prefix.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use sha2::{Digest, Sha256, Sha384, Sha512};

/// The hash a key is derived with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `cost` rounds of SHA: `h = SHA(salt || password)`, then `h = SHA(h)`.
    Sha256,
    Sha384,
    Sha512,
    /// PBKDF2-HMAC with `cost` iterations; the password is `nonce || counter`.
    Pbkdf2Sha256,
    Pbkdf2Sha384,
    Pbkdf2Sha512,
}

impl Algorithm {
    /// ALTCHA's algorithm names (exact case, as altcha-lib accepts them).
    pub fn from_altcha(name: &str) -> Option<Algorithm> {
        Some(match name {
            "SHA-256" => Algorithm::Sha256,
            "SHA-384" => Algorithm::Sha384,
            "SHA-512" => Algorithm::Sha512,
            "PBKDF2/SHA-256" => Algorithm::Pbkdf2Sha256,
            "PBKDF2/SHA-384" => Algorithm::Pbkdf2Sha384,
            "PBKDF2/SHA-512" => Algorithm::Pbkdf2Sha512,
            _ => return None,
        })
    }

    /// Approximate SHA compression calls one attempt costs (for chunk sizing).
    fn work_per_attempt(self, cost: u32, key_len: usize) -> u64 {
        let cost = u64::from(cost.max(1));
        match self {
            Algorithm::Sha256 | Algorithm::Sha384 | Algorithm::Sha512 => cost,
            _ => 2 * cost * (key_len as u64).div_ceil(32).max(1),
        }
    }
}

/// How the counter is appended to the nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterMode {
    /// Four bytes, big-endian (altcha-lib v2 default).
    Uint32,
    /// Decimal ASCII digits (ALTCHA v1, Cap).
    Decimal,
}

/// A hex prefix the derived key must start with, possibly of odd length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix {
    bytes: Vec<u8>,
    /// A trailing half byte (the high nibble of the next key byte).
    half: Option<u8>,
}

impl Prefix {
    /// Parses a hex prefix (either case); `None` if empty or not hex.
    pub fn parse(hex: &str) -> Option<Prefix> {
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let s = hex.to_ascii_lowercase();
        let even = s.len() / 2 * 2;
        let bytes = ::hex::decode(&s[..even]).ok()?;
        let half = if s.len() % 2 == 1 { u8::from_str_radix(&s[even..], 16).ok() } else { None };
        Some(Prefix { bytes, half })
    }

    /// Length in hex characters.
    pub fn hex_len(&self) -> usize {
        self.bytes.len() * 2 + usize::from(self.half.is_some())
    }

    #[inline]
    pub fn matches(&self, key: &[u8]) -> bool {
        if key.len() < self.bytes.len() || !key.starts_with(&self.bytes) {
            return false;
        }
        match self.half {
            None => true,
            Some(h) => key.get(self.bytes.len()).is_some_and(|b| b >> 4 == h),
        }
    }
}

/// One search: everything that fixes the derived key except the counter.
#[derive(Debug, Clone)]
pub struct Task {
    pub algorithm: Algorithm,
    pub cost: u32,
    pub key_len: usize,
    pub salt: Vec<u8>,
    pub nonce: Vec<u8>,
    pub mode: CounterMode,
    pub prefix: Prefix,
    /// Counters `0..=max_counter` are tried.
    pub max_counter: u64,
}

/// What a search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub counter: u64,
    pub key: Vec<u8>,
}

/// Why a search ended without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Exhausted,
    Cancelled,
    TimedOut,
}

fn write_decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

fn iterate_sha<D: Digest + Clone>(first: &[u8], cost: u32, key_len: usize, out: &mut Vec<u8>) {
    let mut h = D::digest(first);
    for _ in 1..cost.max(1) {
        h = D::digest(&h);
    }
    out.clear();
    out.extend_from_slice(&h[..key_len.min(h.len())]);
}

impl Task {
    /// The password for `counter`: `nonce || encode(counter)`.
    fn password<'a>(&self, counter: u64, buf: &'a mut Vec<u8>) -> &'a [u8] {
        buf.clear();
        buf.extend_from_slice(&self.nonce);
        match self.mode {
            CounterMode::Uint32 => buf.extend_from_slice(&(counter as u32).to_be_bytes()),
            CounterMode::Decimal => {
                let mut d = [0u8; 20];
                buf.extend_from_slice(write_decimal(counter, &mut d));
            }
        }
        buf
    }

    /// The derived key for `counter` (altcha-lib's `deriveKey`).
    pub fn derive(&self, counter: u64) -> Vec<u8> {
        let mut scratch = Vec::new();
        let mut out = Vec::new();
        self.derive_into(counter, &mut scratch, &mut out);
        out
    }

    fn derive_into(&self, counter: u64, scratch: &mut Vec<u8>, out: &mut Vec<u8>) {
        match self.algorithm {
            Algorithm::Sha256 | Algorithm::Sha384 | Algorithm::Sha512 => {
                scratch.clear();
                scratch.extend_from_slice(&self.salt);
                scratch.extend_from_slice(&self.nonce);
                match self.mode {
                    CounterMode::Uint32 => scratch.extend_from_slice(&(counter as u32).to_be_bytes()),
                    CounterMode::Decimal => {
                        let mut d = [0u8; 20];
                        scratch.extend_from_slice(write_decimal(counter, &mut d));
                    }
                }
                match self.algorithm {
                    Algorithm::Sha256 => iterate_sha::<Sha256>(scratch, self.cost, self.key_len, out),
                    Algorithm::Sha384 => iterate_sha::<Sha384>(scratch, self.cost, self.key_len, out),
                    _ => iterate_sha::<Sha512>(scratch, self.cost, self.key_len, out),
                }
            }
            alg => {
                let pw = self.password(counter, scratch).to_vec();
                out.clear();
                out.resize(self.key_len, 0);
                let rounds = self.cost.max(1);
                // Key lengths are validated before a task is built, so these cannot fail.
                let _ = match alg {
                    Algorithm::Pbkdf2Sha256 => pbkdf2::pbkdf2::<hmac::Hmac<Sha256>>(&pw, &self.salt, rounds, out),
                    Algorithm::Pbkdf2Sha384 => pbkdf2::pbkdf2::<hmac::Hmac<Sha384>>(&pw, &self.salt, rounds, out),
                    _ => pbkdf2::pbkdf2::<hmac::Hmac<Sha512>>(&pw, &self.salt, rounds, out),
                };
            }
        }
    }

    /// Counters per work unit a thread claims: about 16k compressions.
    fn chunk(&self) -> u64 {
        (16_384 / self.algorithm.work_per_attempt(self.cost, self.key_len)).clamp(1, 16_384)
    }

    /// Searches `0..=max_counter` on `threads` threads. Threads claim chunks
    /// of counters in order, so the answer is (nearly) the smallest; the first
    /// thread to find one stops the others. `cancelled` is polled between chunks.
    pub fn search(
        &self,
        threads: usize,
        cancelled: &(dyn Fn() -> bool + Sync),
        deadline: Option<Instant>,
    ) -> Result<(Found, u64), Stop> {
        let threads = threads.max(1);
        let chunk = self.chunk();
        let next = AtomicU64::new(0);
        let attempts = AtomicU64::new(0);
        let done = AtomicBool::new(false);
        let found: std::sync::Mutex<Option<Found>> = std::sync::Mutex::new(None);
        let stop: std::sync::Mutex<Option<Stop>> = std::sync::Mutex::new(None);
        let work = || {
            let mut scratch = Vec::with_capacity(self.salt.len() + self.nonce.len() + 20);
            let mut key = Vec::with_capacity(64);
            loop {
                if done.load(Ordering::Relaxed) {
                    return;
                }
                if cancelled() {
                    set_stop(&stop, &done, Stop::Cancelled);
                    return;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    set_stop(&stop, &done, Stop::TimedOut);
                    return;
                }
                let start = next.fetch_add(chunk, Ordering::Relaxed);
                if start > self.max_counter {
                    return;
                }
                let end = start.saturating_add(chunk - 1).min(self.max_counter);
                let mut n = start;
                loop {
                    self.derive_into(n, &mut scratch, &mut key);
                    if self.prefix.matches(&key) {
                        attempts.fetch_add(n - start + 1, Ordering::Relaxed);
                        let mut f = found.lock().unwrap_or_else(|e| e.into_inner());
                        if f.as_ref().is_none_or(|f| n < f.counter) {
                            *f = Some(Found { counter: n, key: key.clone() });
                        }
                        done.store(true, Ordering::Relaxed);
                        return;
                    }
                    if n == end {
                        break;
                    }
                    n += 1;
                    // Another thread may have found one: stop mid-chunk.
                    if n & 255 == 0 && done.load(Ordering::Relaxed) {
                        attempts.fetch_add(n - start, Ordering::Relaxed);
                        return;
                    }
                }
                attempts.fetch_add(end - start + 1, Ordering::Relaxed);
            }
        };
        std::thread::scope(|s| {
            for _ in 1..threads {
                s.spawn(work);
            }
            work();
        });
        let attempts = attempts.load(Ordering::Relaxed);
        if let Some(f) = found.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Ok((f, attempts));
        }
        Err(stop.into_inner().unwrap_or_else(|e| e.into_inner()).unwrap_or(Stop::Exhausted))
    }
}

fn set_stop(stop: &std::sync::Mutex<Option<Stop>>, done: &AtomicBool, why: Stop) {
    let mut s = stop.lock().unwrap_or_else(|e| e.into_inner());
    s.get_or_insert(why);
    done.store(true, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors computed with altcha-lib 2.8.0 (`algorithms/sha`, `algorithms/pbkdf2`,
    // `PasswordBuffer`) under Node 20.
    const NONCE: &str = "000102030405060708090a0b0c0d0e0f";
    const SALT: &str = "f0e0d0c0b0a090807060504030201000";

    fn task(algorithm: Algorithm, cost: u32, mode: CounterMode) -> Task {
        Task {
            algorithm,
            cost,
            key_len: 32,
            salt: hex::decode(SALT).unwrap(),
            nonce: hex::decode(NONCE).unwrap(),
            mode,
            prefix: Prefix::parse("00").unwrap(),
            max_counter: 1000,
        }
    }

    #[test]
    fn derive_matches_altcha_lib() {
        use Algorithm::*;
        use CounterMode::*;
        let cases: &[(Algorithm, u32, CounterMode, u64, &str)] = &[
            (Sha256, 1, Uint32, 7, "3758a54ecb8eef98aa97ddb90ed59498e74bca9b737f559b4299b185b85e2881"),
            (Sha256, 3, Uint32, 7, "2ae941c9ae38ebbdd5aa1dc4de4ec1fd58b56c2799ff84705eba50cb71f0a26c"),
            (Sha512, 1, Uint32, 7, "c3af01f67eb179ba7435b44358df64207ab940ec2306419ea276ec3be2b89f99"),
            (Pbkdf2Sha256, 10, Uint32, 7, "b99c172c8ad944be63cbbef00f31e15ff1b88a0d00a2e2871732fca931ca5bdf"),
            (Pbkdf2Sha512, 5, Uint32, 7, "dcaea890aa856f6d5a4b4dece140b628adcfeba175135929f39f861a9a8a04a2"),
            (Sha256, 1, Uint32, 123456, "3a07e141b2742a9aa393ccf7d8790fbf1485c950aad12b091bef1cf0835dde92"),
            (Sha256, 3, Uint32, 123456, "cadb8095086a26e1b2928c3b4450bc8f84ff124b4989a7e34fae168f7bf7f566"),
            (Pbkdf2Sha256, 10, Uint32, 123456, "8e0eaf5dcff635b1b499dfc08e6133df1e885194bdf03a4fa465338d08309726"),
            (Sha256, 1, Decimal, 123456, "119359517a93c34ff0b3924ee034e590e44f5e2d9c2522c675508bdc9d0d3726"),
            (Sha256, 3, Decimal, 123456, "06013c4f4707e4f90d25a41d7d2acadc425718510b04387c7d4ed29ba77597b8"),
            (Sha512, 1, Decimal, 123456, "17f11bd4bad66bfc57463bd27a4c6170c93a87f0bcf9d2953168a4fed6b1b7a4"),
            (Pbkdf2Sha256, 10, Decimal, 123456, "2e01f2e0f55cc6e559ed6896882fc61c224ce0db4b1435e03c32a570204f2e41"),
            (Pbkdf2Sha512, 5, Decimal, 123456, "5b0bb4ae0600681598c2cfe37f563a477b6bc25b2280847ad4f42b4824bcdcc1"),
        ];
        for &(alg, cost, mode, counter, want) in cases {
            assert_eq!(
                hex::encode(task(alg, cost, mode).derive(counter)),
                want,
                "{alg:?} cost {cost} {mode:?} {counter}"
            );
        }
    }

    #[test]
    fn v1_hash_vector() {
        // sha256("a1b2c3d4e5f6&" + "12345") from node:crypto.
        let t = Task {
            algorithm: Algorithm::Sha256,
            cost: 1,
            key_len: 32,
            salt: Vec::new(),
            nonce: b"a1b2c3d4e5f6&".to_vec(),
            mode: CounterMode::Decimal,
            prefix: Prefix::parse("3932e6e863307c4872f17aabe20f566618fc4887b45edffdf5bc3f0acc3ca81d").unwrap(),
            max_counter: 20_000,
        };
        let (f, _) = t.search(2, &|| false, None).unwrap();
        assert_eq!(f.counter, 12345);
    }

    #[test]
    fn prefixes() {
        let p = Prefix::parse("0a1").unwrap();
        assert_eq!(p.hex_len(), 3);
        assert!(p.matches(&[0x0a, 0x1f, 0]));
        assert!(!p.matches(&[0x0a, 0x2f, 0]));
        assert!(!p.matches(&[0x0a]));
        assert!(Prefix::parse("").is_none());
        assert!(Prefix::parse("zz").is_none());
        assert!(Prefix::parse("AB").unwrap().matches(&[0xab]));
    }

    #[test]
    fn search_finds_and_stops() {
        let mut t = task(Algorithm::Sha256, 1, CounterMode::Uint32);
        t.prefix = Prefix::parse("000").unwrap();
        t.max_counter = 1_000_000;
        let never = || false;
        let (single, _) = t.search(1, &never, None).unwrap();
        let (multi, _) = t.search(4, &never, None).unwrap();
        assert!(t.prefix.matches(&single.key));
        assert!(t.prefix.matches(&multi.key));
        assert_eq!(t.derive(multi.counter), multi.key);
        t.prefix = Prefix::parse("00000000000000").unwrap();
        t.max_counter = 5_000;
        assert_eq!(t.search(2, &never, None), Err(Stop::Exhausted));
        t.max_counter = u64::from(u32::MAX);
        assert_eq!(t.search(2, &|| true, None), Err(Stop::Cancelled));
        assert_eq!(t.search(2, &never, Some(Instant::now())), Err(Stop::TimedOut));
    }
}
