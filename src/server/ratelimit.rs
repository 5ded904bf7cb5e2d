//! Request rate limits (GCRA, by the `governor` crate): one budget per
//! client token, one per peer address for anonymous calls. The operator is
//! not limited: it is the service's own back office.
//!
//! A refused request is answered before anything runs (HTTP 429 with
//! `Retry-After`, code `RATE_LIMITED`), so it changes nothing.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

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
            clock: DefaultClock::default(),
        }
    }

    /// Spends one request of the caller's budget, or says how long to wait.
    pub fn check(&self, caller: &Caller, peer: Option<IpAddr>) -> AppResult<()> {
        let (limiter, key) = match caller {
            Caller::Operator => return Ok(()),
            Caller::Client { client_id, .. } => (&self.clients, Key::Client(*client_id)),
            Caller::Anonymous => match peer {
                Some(ip) => (&self.anonymous, Key::Peer(ip)),
                None => return Ok(()),
            },
        };
        let Some(limiter) = limiter else {
            return Ok(());
        };
        limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            AppError::RateLimited {
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            }
        })
    }

    /// Forgets budgets that are full again, so idle keys do not pile up.
    fn prune(&self) {
        for limiter in [&self.clients, &self.anonymous].into_iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Prunes every minute for as long as the limiter is in use.
    pub fn spawn_pruning(&self) {
        let weak = (
            self.clients.as_ref().map(Arc::downgrade),
            self.anonymous.as_ref().map(Arc::downgrade),
        );
        if weak.0.is_none() && weak.1.is_none() {
            return;
        }
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let clients = weak.0.as_ref().and_then(std::sync::Weak::upgrade);
                let anonymous = weak.1.as_ref().and_then(std::sync::Weak::upgrade);
                if clients.is_none() && anonymous.is_none() {
                    return;
                }
                RateLimiter {
                    clients,
                    anonymous,
                    clock: DefaultClock::default(),
                }
                .prune();
            }
        });
    }
}
