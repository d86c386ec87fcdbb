//! The two limits on YourGPT's confirmation emails: a rate (YourGPT allows 5 a minute per
//! client id) and a per-person resend window.
//!
//! Both are exact sliding windows. In one process they are a handful of timestamps:
//! pingora-limits' `Rate` is an estimator over fixed intervals, and "the 6th email within any
//! 60 s never leaves" needs the exact count, which a few `Instant`s under a mutex give for free.
//! With `[state]` the fleet shares them on Redis ([`SharedState`]); while Redis does not
//! answer, each process falls back to its own (which also records what the fleet allowed it,
//! so an outage starts from what this instance did).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::keyed::pseudonym;
use crate::shared_state::{Held, SharedState};

/// YourGPT's email limit counts per minute.
const EMAIL_WINDOW: Duration = Duration::from_secs(60);

/// At most `limit` events in any `window`.
pub struct SlidingWindow {
    limit: usize,
    window: Duration,
    events: Mutex<VecDeque<Instant>>,
}

impl SlidingWindow {
    pub fn new(limit: u32, window: Duration) -> Self {
        SlidingWindow {
            limit: limit as usize,
            window,
            events: Mutex::new(VecDeque::new()),
        }
    }

    /// Takes a slot now, or says how long until one frees up.
    pub fn try_acquire(&self, now: Instant) -> Result<(), Duration> {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        while events
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            events.pop_front();
        }
        if events.len() < self.limit {
            events.push_back(now);
            return Ok(());
        }
        let oldest = events.front().copied().unwrap_or(now);
        Err(self
            .window
            .saturating_sub(now.saturating_duration_since(oldest)))
    }
}

/// The confirmation-email limit of one YourGPT client id.
pub struct EmailLimit {
    local: SlidingWindow,
    /// The fleet's window: its Redis and key.
    shared: Option<(Arc<SharedState>, String)>,
    per_minute: u32,
}

impl EmailLimit {
    /// Takes a slot now, or says how long until one frees up: the fleet's window when Redis
    /// answers, else this process's.
    pub async fn try_acquire(&self) -> Result<(), Duration> {
        if let Some((state, key)) = &self.shared {
            if let Some(answer) = state.take_slot(key, self.per_minute, EMAIL_WINDOW).await {
                if answer.is_ok() {
                    // Recorded here too, for an outage that may follow.
                    let _ = self.local.try_acquire(Instant::now());
                }
                return answer;
            }
        }
        self.local.try_acquire(Instant::now())
    }
}

/// One email limit per YourGPT client id: apps that share a client id share its limit (the
/// first such app's `emails_per_minute`), since YourGPT counts per organisation.
#[derive(Default)]
pub struct EmailLimits {
    by_client: HashMap<String, Arc<EmailLimit>>,
    shared: Option<Arc<SharedState>>,
}

impl EmailLimits {
    /// Limits shared by the fleet through `shared` (`None`: per process).
    pub fn new(shared: Option<Arc<SharedState>>) -> Self {
        EmailLimits {
            by_client: HashMap::new(),
            shared,
        }
    }

    /// The limit of `client_id`. `hash_key` (the app's secret, which the fleet shares) keys
    /// the hash that names it on Redis.
    pub fn for_client(
        &mut self,
        client_id: &str,
        per_minute: u32,
        hash_key: &[u8],
    ) -> Arc<EmailLimit> {
        let shared = &self.shared;
        self.by_client
            .entry(client_id.to_string())
            .or_insert_with(|| {
                Arc::new(EmailLimit {
                    local: SlidingWindow::new(per_minute, EMAIL_WINDOW),
                    shared: shared.as_ref().map(|state| {
                        let id = pseudonym(hash_key, client_id.as_bytes());
                        (state.clone(), state.key(&format!("yourgpt:emails:{id}")))
                    }),
                    per_minute,
                })
            })
            .clone()
    }

    /// The resend window of one app (`client_id`, `hash_key`: as for [`Self::for_client`]).
    pub fn resend_window(
        &self,
        window: Duration,
        client_id: &str,
        hash_key: &[u8],
    ) -> ResendWindow {
        ResendWindow {
            local: RecentSends::new(window),
            shared: self.shared.as_ref().map(|state| {
                let id = pseudonym(hash_key, client_id.as_bytes());
                let key = state.key(&format!("yourgpt:sent:{id}:"));
                (state.clone(), key, hash_key.to_vec())
            }),
            window,
        }
    }
}

/// One app's resend window: per person, the fleet's on Redis when it answers, else this
/// process's.
pub struct ResendWindow {
    local: RecentSends,
    /// The fleet's Redis, the key before the person's hash, the hash key.
    shared: Option<(Arc<SharedState>, String, Vec<u8>)>,
    window: Duration,
}

/// A person's claim on the resend window, to give back when no email went out.
pub struct Claim {
    who: String,
    shared: Option<Held>,
}

impl ResendWindow {
    /// Claims the window for `who` (a lower-cased email) before an email is sent; `None` when
    /// it is taken (see [`RecentSends::claim`]).
    pub async fn claim(&self, who: &str) -> Option<Claim> {
        if let (Some((state, prefix, hash_key)), false) = (&self.shared, self.window.is_zero()) {
            let key = format!("{prefix}{}", pseudonym(hash_key, who.as_bytes()));
            if let Some(claimed) = state.claim(key, self.window).await {
                let held = claimed?;
                // Recorded here too, for an outage that may follow.
                self.local.claim(who, Instant::now());
                return Some(Claim {
                    who: who.to_string(),
                    shared: Some(held),
                });
            }
        }
        self.local.claim(who, Instant::now()).then(|| Claim {
            who: who.to_string(),
            shared: None,
        })
    }

    /// Gives back a claim whose email did not go out, so the person's next click tries again.
    pub async fn release(&self, claim: Claim) {
        self.local.release(&claim.who);
        if let (Some(held), Some((state, ..))) = (claim.shared, &self.shared) {
            state.release(held).await;
        }
    }
}

/// Who was sent an email recently, so a reload does not send another.
pub struct RecentSends {
    window: Duration,
    max_entries: usize,
    sent: Mutex<HashMap<String, Instant>>,
}

impl RecentSends {
    pub fn new(window: Duration) -> Self {
        RecentSends {
            window,
            max_entries: 100_000,
            sent: Mutex::new(HashMap::new()),
        }
    }

    /// Claims the window for `who` before an email is sent: `false` when it is taken (an
    /// email went out less than the window ago, or one is being sent now). Checking and taking
    /// are one step, so any number of concurrent clicks by one person send one email.
    pub fn claim(&self, who: &str, now: Instant) -> bool {
        if self.window.is_zero() {
            return true;
        }
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        if sent
            .get(who)
            .is_some_and(|t| now.saturating_duration_since(*t) < self.window)
        {
            return false;
        }
        if sent.len() >= self.max_entries {
            let window = self.window;
            sent.retain(|_, t| now.saturating_duration_since(*t) < window);
        }
        // Full of people inside their window: no claim is kept (emails still obey the rate).
        if sent.len() < self.max_entries {
            sent.insert(who.to_string(), now);
        }
        true
    }

    /// Gives back a claim whose email did not go out (the rate limit said wait, or the call
    /// failed), so the person's next click tries again.
    pub fn release(&self, who: &str) {
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        sent.remove(who);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixth_within_the_window_waits_for_the_oldest() {
        let w = SlidingWindow::new(5, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(w.try_acquire(t0 + Duration::from_secs(i)).is_ok());
        }
        let wait = w.try_acquire(t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(w.try_acquire(t0 + Duration::from_secs(60)).is_ok());
        assert!(w.try_acquire(t0 + Duration::from_secs(60)).is_err());
    }

    #[tokio::test]
    async fn apps_sharing_a_client_id_share_its_limit() {
        let mut limits = EmailLimits::default();
        let a = limits.for_client("org-1", 1, b"k");
        let b = limits.for_client("org-1", 5, b"k2");
        let other = limits.for_client("org-2", 1, b"k");
        assert!(a.try_acquire().await.is_ok());
        assert!(
            b.try_acquire().await.is_err(),
            "one organisation, one limit"
        );
        assert!(other.try_acquire().await.is_ok());
    }

    #[test]
    fn a_claim_holds_for_the_window_unless_released() {
        let r = RecentSends::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(r.claim("a@b.c", t0));
        assert!(!r.claim("a@b.c", t0), "taken while the first email is sent");
        assert!(!r.claim("a@b.c", t0 + Duration::from_secs(59)));
        assert!(
            r.claim("a@b.c", t0 + Duration::from_secs(60)),
            "free after the window"
        );
        assert!(r.claim("x@b.c", t0));
        r.release("x@b.c");
        assert!(r.claim("x@b.c", t0), "a released claim is free again");
        let off = RecentSends::new(Duration::ZERO);
        assert!(off.claim("a@b.c", t0) && off.claim("a@b.c", t0));
    }
}
