//! Request rate limits (GCRA, by the `governor` crate): one budget per
//! client token, one per peer address for anonymous calls. The operator is
//! not limited: it is the service's own back office.
//!
//! Guessing tokens has a budget too, per address at the anonymous rate:
//! each unknown token spends it, and past it no token from that address is
//! looked up until it allows again (known tokens are cached, so they are
//! served meanwhile). Governor cannot test a budget without spending it,
//! hence the `blocked` map beside it.
//!
//! A refused request is answered before anything runs (HTTP 429 with
//! `Retry-After`, code `RATE_LIMITED`), so it changes nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use uuid::Uuid;

use crate::config::RateLimits;
use crate::domain::auth::Caller;
use crate::domain::error::{AppError, AppResult};

/// Whose budget a request spends.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum Key {
    Client(Uuid),
    Peer(IpAddr),
}

#[derive(Clone)]
pub struct RateLimiter {
    clients: Option<Arc<DefaultKeyedRateLimiter<Key>>>,
    anonymous: Option<Arc<DefaultKeyedRateLimiter<Key>>>,
    /// Unknown tokens per address (guessing), at the anonymous rate.
    guesses: Option<Arc<DefaultKeyedRateLimiter<Key>>>,
    /// Addresses that guessed past their budget, until when: no token of
    /// theirs is looked up meanwhile.
    blocked: Arc<Mutex<HashMap<IpAddr, Instant>>>,
    clock: DefaultClock,
}

/// `per_second` requests a second with bursts of two seconds' worth; none
/// when the rate is 0 (the limit is off).
fn limiter(per_second: u32) -> Option<Arc<DefaultKeyedRateLimiter<Key>>> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = rate.saturating_mul(NonZeroU32::MIN.saturating_add(1));
    Some(Arc::new(governor::RateLimiter::keyed(
        Quota::per_second(rate).allow_burst(burst),
    )))
}

impl RateLimiter {
    pub fn new(limits: &RateLimits) -> RateLimiter {
        RateLimiter {
            clients: limiter(limits.per_token),
            anonymous: limiter(limits.anonymous_per_address),
            guesses: limiter(limits.anonymous_per_address),
            blocked: Arc::default(),
            clock: DefaultClock::default(),
        }
    }

    fn limited(wait: Duration) -> AppError {
        AppError::RateLimited {
            retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
        }
    }

    /// Before a token is looked up in the database: refused while the
    /// address is blocked for guessing.
    pub fn lookup_allowed(&self, peer: Option<IpAddr>) -> AppResult<()> {
        let Some(ip) = peer else {
            return Ok(());
        };
        let mut blocked = self.blocked.lock().unwrap_or_else(PoisonError::into_inner);
        match blocked.get(&ip) {
            Some(until) if *until > Instant::now() => Err(Self::limited(
                until.saturating_duration_since(Instant::now()),
            )),
            Some(_) => {
                blocked.remove(&ip);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// After a lookup found no such token: spends the address's guessing
    /// budget; past it the address is blocked until the budget allows again
    /// (and this request is refused as rate-limited).
    pub fn failed_lookup(&self, peer: Option<IpAddr>) -> AppResult<()> {
        let (Some(ip), Some(guesses)) = (peer, &self.guesses) else {
            return Ok(());
        };
        guesses.check_key(&Key::Peer(ip)).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            self.blocked
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(ip, Instant::now() + wait);
            Self::limited(wait)
        })
    }

    /// Spends one request of the caller's budget, or says how long to wait.
    pub fn check(&self, caller: &Caller, peer: Option<IpAddr>) -> AppResult<()> {
        self.check_n(caller, peer, 1)
    }

    /// Spends `units` of the caller's budget at once, or none of them and
    /// says how long to wait. More than the burst can ever allow is refused
    /// for a second's wait: the caller should split its request.
    pub fn check_n(&self, caller: &Caller, peer: Option<IpAddr>, units: u32) -> AppResult<()> {
        let (limiter, key) = match caller {
            Caller::Operator => return Ok(()),
            Caller::Client { client_id, .. } => (&self.clients, Key::Client(*client_id)),
            Caller::Anonymous => match peer {
                Some(ip) => (&self.anonymous, Key::Peer(ip)),
                None => return Ok(()),
            },
        };
        let (Some(limiter), Some(units)) = (limiter, NonZeroU32::new(units)) else {
            return Ok(());
        };
        match limiter.check_key_n(&key, units) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(Self::limited(not_until.wait_time_from(self.clock.now()))),
            Err(_) => Err(Self::limited(Duration::from_secs(1))),
        }
    }

    /// Forgets budgets that are full again and blocks that ended, so idle
    /// keys do not pile up.
    fn prune(&self) {
        for limiter in [&self.clients, &self.anonymous, &self.guesses]
            .into_iter()
            .flatten()
        {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        let now = Instant::now();
        self.blocked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, until| *until > now);
    }

    /// Prunes every minute for as long as the server runs.
    pub fn spawn_pruning(&self) {
        let limiter = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                limiter.prune();
            }
        });
    }
}
