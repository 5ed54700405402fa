//! http: the sign-in form's back-off, per client address. The first
//! [`FREE_ATTEMPTS`] failed sign-ins of an address cost nothing; each one
//! after makes the next wait, 1 s doubling up to [`MAX_WAIT`]. A wait is
//! answered 429 with `Retry-After` before any token is looked at: nothing
//! sleeps, nothing holds a connection or the store. A successful sign-in
//! forgets the address; so do [`FORGET_AFTER`] without an attempt. At most
//! [`MAX_ADDRESSES`] are tracked; beyond, the one quiet longest goes.
//!
//! The address is the TCP peer's: `X-Forwarded-For` is not trusted (any
//! client can send one). Behind a reverse proxy every client shares the
//! proxy's address, and so its back-off. IPv6 clients are grouped by /64,
//! what one host usually holds.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sign-ins an address may fail before it must wait.
pub const FREE_ATTEMPTS: u32 = 5;
/// The first wait; doubled with each failure after, up to [`MAX_WAIT`].
pub const FIRST_WAIT: Duration = Duration::from_secs(1);
/// The longest wait: behind a proxy all clients share it.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// An address without an attempt for this long starts afresh.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Addresses tracked at most.
pub const MAX_ADDRESSES: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Attempts {
    /// Sign-ins begun and not succeeded (a failure is counted when it
    /// begins, so parallel attempts cannot slip past the count).
    count: u32,
    last: Instant,
    /// No attempt is checked before this.
    until: Option<Instant>,
}

/// The failed sign-ins of recent addresses.
#[derive(Default)]
pub struct LoginThrottle {
    by_address: Mutex<HashMap<IpAddr, Attempts>>,
}

impl LoginThrottle {
    /// A sign-in from `peer` begins: `Err(wait)` when it must wait that
    /// long first (answer 429), `Ok` when its token may be checked.
    pub fn begin(&self, peer: IpAddr) -> Result<(), Duration> {
        self.begin_at(key(peer), Instant::now())
    }

    /// The sign-in from `peer` succeeded: its failures are forgotten.
    pub fn succeeded(&self, peer: IpAddr) {
        self.lock().remove(&key(peer));
    }

    fn begin_at(&self, key: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut all = self.lock();
        if !all.contains_key(&key) && all.len() >= MAX_ADDRESSES {
            make_room(&mut all, now);
        }
        let a = all.entry(key).or_insert(Attempts {
            count: 0,
            last: now,
            until: None,
        });
        if let Some(until) = a.until.filter(|u| *u > now) {
            return Err(until - now);
        }
        if now.duration_since(a.last) >= FORGET_AFTER {
            a.count = 0;
        }
        a.count = a.count.saturating_add(1);
        a.last = now;
        if a.count > FREE_ATTEMPTS {
            // This attempt goes on; the next waits.
            a.until = Some(now + wait(a.count - FREE_ATTEMPTS));
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Attempts>> {
        self.by_address.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The wait after the n-th failure beyond the free ones: 1 s, 2 s, 4 s, …
fn wait(n: u32) -> Duration {
    FIRST_WAIT
        .saturating_mul(1u32 << (n - 1).min(16))
        .min(MAX_WAIT)
}

/// Forgets the addresses quiet for [`FORGET_AFTER`] and not waiting; if
/// none is, the one quiet longest, one that is not waiting if any.
fn make_room(all: &mut HashMap<IpAddr, Attempts>, now: Instant) {
    let waiting = |a: &Attempts| a.until.is_some_and(|u| u > now);
    all.retain(|_, a| now.duration_since(a.last) < FORGET_AFTER || waiting(a));
    if all.len() < MAX_ADDRESSES {
        return;
    }
    let quietest = |only_free: bool| {
        all.iter()
            .filter(|(_, a)| !(only_free && waiting(a)))
            .min_by_key(|(_, a)| a.last)
            .map(|(k, _)| *k)
    };
    if let Some(quiet) = quietest(true).or_else(|| quietest(false)) {
        all.remove(&quiet);
    }
}

/// What is counted together: an IPv4 address, or an IPv6 /64.
fn key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// 2,800 failed sign-ins a second were checked against the store.
    #[test]
    fn failed_sign_ins_back_off_per_address_doubling_to_a_cap() {
        let t = LoginThrottle::default();
        let a = key(ip("192.0.2.7"));
        let mut now = Instant::now();
        for _ in 0..FREE_ATTEMPTS {
            assert_eq!(t.begin_at(a, now), Ok(()));
        }
        // The sixth goes on, and sets the first wait.
        assert_eq!(t.begin_at(a, now), Ok(()));
        assert_eq!(t.begin_at(a, now), Err(FIRST_WAIT));
        // Waiting is not failing: the wait does not grow while refused.
        now += Duration::from_millis(400);
        assert_eq!(t.begin_at(a, now), Err(Duration::from_millis(600)));
        let mut waits = Vec::new();
        for _ in 0..10 {
            now += Duration::from_secs(3600).min(MAX_WAIT);
            assert_eq!(t.begin_at(a, now), Ok(()));
            waits.push(t.begin_at(a, now).unwrap_err().as_secs());
        }
        assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60, 60, 60, 60]);
        // Another address is not concerned.
        assert_eq!(t.begin_at(key(ip("192.0.2.8")), now), Ok(()));
        // A success forgets.
        t.succeeded(ip("192.0.2.7"));
        for _ in 0..FREE_ATTEMPTS {
            assert_eq!(t.begin_at(a, now), Ok(()));
        }
    }

    #[test]
    fn a_quiet_address_starts_afresh() {
        let t = LoginThrottle::default();
        let a = key(ip("192.0.2.7"));
        let now = Instant::now();
        for _ in 0..=FREE_ATTEMPTS {
            t.begin_at(a, now).unwrap();
        }
        let later = now + FORGET_AFTER;
        for _ in 0..FREE_ATTEMPTS {
            assert_eq!(t.begin_at(a, later), Ok(()));
        }
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(
            key(ip("2001:db8:1:2:ffff::9")),
            key(ip("2001:db8:1:2:1::1"))
        );
        assert_ne!(key(ip("2001:db8:1:2::1")), key(ip("2001:db8:1:3::1")));
        assert_eq!(key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn the_addresses_tracked_are_bounded() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        let waiting = ip("198.51.100.1");
        for _ in 0..=FREE_ATTEMPTS {
            t.begin_at(waiting, now).unwrap();
        }
        for i in 0..(MAX_ADDRESSES as u32 * 2) {
            let addr = IpAddr::V4((0x0a00_0000 + i).into());
            t.begin_at(addr, now + Duration::from_millis(1)).unwrap();
        }
        assert!(t.lock().len() <= MAX_ADDRESSES);
        // A flood of new addresses does not free one that waits.
        assert!(t.begin_at(waiting, now).is_err());
    }
}
