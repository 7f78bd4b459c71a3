//! Misses of the tracking page's proofs, and the lockouts they earn: a case after
//! [`CASE_MISSES`] wrong phone digits, a client address after [`CLIENT_MISSES`] wrong proofs of
//! any kind (or unknown cases), each for [`LOCKOUT`] from its last miss. Misses older than
//! [`LOCKOUT`] are forgotten. Kept in this replica's memory (a replica's restart forgets them;
//! with N replicas behind a balancer a guesser gets at most N times the tries).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Wrong phone digits that lock a case's phone proof (4 digits: 5 tries in 10,000 an hour).
pub const CASE_MISSES: u32 = 5;
/// Wrong proofs that lock a client address out of every tracking page.
pub const CLIENT_MISSES: u32 = 10;
/// How long a lockout lasts from the miss that caused it; misses are forgotten this long after
/// the last one.
pub const LOCKOUT: Duration = Duration::from_secs(3600);
/// Scopes remembered at most; past it, those whose misses are forgotten are dropped first, then
/// the oldest.
const MAX_SCOPES: usize = 100_000;

/// What a miss counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// A case's phone proof.
    Case(String),
    /// A client: an IPv4 address, or an IPv6 /64 (one subscriber's usual allocation, so a client
    /// cannot step around its lockout through its own addresses).
    Client(IpAddr),
}

impl Scope {
    /// The client scope of address `ip`.
    pub fn client(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::Client(IpAddr::V4(v4)),
                None => Self::Client(IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into())),
            },
            v4 => Self::Client(v4),
        }
    }

    fn limit(&self) -> u32 {
        match self {
            Self::Case(_) => CASE_MISSES,
            Self::Client(_) => CLIENT_MISSES,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Misses {
    count: u32,
    last: Instant,
}

/// The misses of every scope.
#[derive(Debug)]
pub struct Lockouts {
    misses: Mutex<HashMap<Scope, Misses>>,
    /// Scopes remembered at most ([`MAX_SCOPES`]).
    max_scopes: usize,
}

impl Default for Lockouts {
    fn default() -> Self {
        Self { misses: Mutex::default(), max_scopes: MAX_SCOPES }
    }
}

impl Lockouts {
    /// How long `scope` stays locked at `now`; `None` when it is not.
    pub fn locked(&self, scope: &Scope, now: Instant) -> Option<Duration> {
        let misses = *self.misses.lock().unwrap_or_else(|p| p.into_inner()).get(scope)?;
        let until = misses.last + LOCKOUT;
        (misses.count >= scope.limit() && now < until).then(|| until - now)
    }

    /// Counts a miss against `scope` at `now`; true when this miss locks it.
    pub fn miss(&self, scope: Scope, now: Instant) -> bool {
        let mut all = self.misses.lock().unwrap_or_else(|p| p.into_inner());
        if all.len() >= self.max_scopes && !all.contains_key(&scope) {
            all.retain(|_, m| now < m.last + LOCKOUT);
            if all.len() >= self.max_scopes
                && let Some(oldest) = all.iter().min_by_key(|(_, m)| m.last).map(|(s, _)| s.clone())
            {
                all.remove(&oldest);
            }
        }
        let limit = scope.limit();
        let misses = all.entry(scope).or_insert(Misses { count: 0, last: now });
        if now >= misses.last + LOCKOUT {
            misses.count = 0;
        }
        misses.count += 1;
        misses.last = now;
        misses.count == limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_locks_at_its_fifth_miss_for_an_hour_from_it() {
        let lockouts = Lockouts::default();
        let case = Scope::Case("open311-1".into());
        let t0 = Instant::now();
        for n in 1..CASE_MISSES {
            assert!(!lockouts.miss(case.clone(), t0), "miss {n}");
            assert_eq!(lockouts.locked(&case, t0), None, "after miss {n}");
        }
        assert!(lockouts.miss(case.clone(), t0), "the fifth miss locks");
        assert_eq!(lockouts.locked(&case, t0), Some(LOCKOUT));
        let later = t0 + Duration::from_secs(600);
        assert_eq!(lockouts.locked(&case, later), Some(LOCKOUT - Duration::from_secs(600)));
        assert_eq!(lockouts.locked(&case, t0 + LOCKOUT), None, "unlocked an hour after the last miss");
        assert_eq!(lockouts.locked(&Scope::Case("open311-2".into()), t0), None, "another case is not locked");
    }

    #[test]
    fn past_its_size_it_forgets_expired_scopes_first_then_the_oldest() {
        let lockouts = Lockouts { max_scopes: 2, ..Lockouts::default() };
        let t0 = Instant::now();
        let case = |n: u32| Scope::Case(format!("cad-{n}"));
        let count = |scope: &Scope| lockouts.misses.lock().expect("lock").get(scope).map(|m| m.count);
        lockouts.miss(case(1), t0);
        lockouts.miss(case(2), t0 + Duration::from_secs(10));
        lockouts.miss(case(2), t0 + Duration::from_secs(10));
        assert!(!lockouts.miss(case(2), t0 + Duration::from_secs(20)), "a known scope is counted at the size");
        assert_eq!((count(&case(1)), count(&case(2))), (Some(1), Some(3)), "nothing forgotten for a known scope");
        lockouts.miss(case(3), t0 + LOCKOUT);
        assert_eq!((count(&case(1)), count(&case(2)), count(&case(3))), (None, Some(3), Some(1)), "case 1 expired");
        lockouts.miss(case(4), t0 + LOCKOUT + Duration::from_secs(1));
        assert_eq!((count(&case(2)), count(&case(3)), count(&case(4))), (None, Some(1), Some(1)), "case 2 the oldest");

        let lockouts = Lockouts { max_scopes: 2, ..Lockouts::default() };
        let count = |scope: &Scope| lockouts.misses.lock().expect("lock").get(scope).map(|m| m.count);
        lockouts.miss(case(1), t0);
        lockouts.miss(case(2), t0);
        lockouts.miss(case(3), t0 + LOCKOUT);
        assert_eq!((count(&case(1)), count(&case(2))), (None, None), "both expired, both forgotten");
    }

    #[test]
    fn misses_an_hour_old_are_forgotten() {
        let lockouts = Lockouts::default();
        let client = Scope::client("192.0.2.1".parse().expect("an address"));
        let t0 = Instant::now();
        for _ in 1..CLIENT_MISSES {
            lockouts.miss(client.clone(), t0);
        }
        assert!(!lockouts.miss(client.clone(), t0 + LOCKOUT), "the count started again");
        assert_eq!(lockouts.locked(&client, t0 + LOCKOUT), None);
    }

    #[test]
    fn a_client_locks_at_its_tenth_miss_and_ipv6_counts_per_64() {
        let lockouts = Lockouts::default();
        let t0 = Instant::now();
        let a = Scope::client("2001:db8:1:2::1".parse().expect("an address"));
        let b = Scope::client("2001:db8:1:2:ffff::9".parse().expect("an address"));
        assert_eq!(a, b, "one /64");
        assert_ne!(a, Scope::client("2001:db8:1:3::1".parse().expect("an address")));
        assert_eq!(
            Scope::client("::ffff:192.0.2.1".parse().expect("an address")),
            Scope::client("192.0.2.1".parse().expect("an address"))
        );
        let locked: Vec<bool> = (0..CLIENT_MISSES).map(|_| lockouts.miss(a.clone(), t0)).collect();
        assert_eq!(locked.iter().filter(|l| **l).count(), 1);
        assert!(locked[CLIENT_MISSES as usize - 1]);
        assert!(lockouts.locked(&b, t0).is_some());
    }
}
