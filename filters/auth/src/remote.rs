//! Remote key sets: when to fetch, what to keep, how to share. One VM's
//! fetch is stored in the proxy's shared data (`fetched_at_ms\n<JWKS>`), so
//! every worker VM of the plugin reads it instead of fetching its own. A
//! failed fetch keeps the old keys (stale, but better than refusing every
//! token) and retries with exponential back-off.

use std::rc::Rc;

use crate::config::RemoteJwks;
use crate::jwk::Jwks;
use crate::policy::Keys;

/// Keys a VM holds for one provider.
#[derive(Debug, Clone)]
pub struct Held {
    pub jwks: Rc<Jwks>,
    /// When the set was fetched (by any VM): also its generation.
    pub fetched_at_ms: u64,
}

/// One remote provider's state in one VM.
#[derive(Debug, Default)]
pub struct RemoteState {
    pub held: Option<Held>,
    /// Consecutive failed fetches.
    pub failures: u32,
    /// No fetch before this time (back-off after failures).
    pub retry_at_ms: u64,
    /// A timer-driven refresh is on its way.
    pub refreshing: bool,
    /// When shared data was last read.
    pub synced_at_ms: Option<u64>,
}

/// How often a VM looks at shared data for a set another VM fetched.
pub const SYNC_EVERY_MS: u64 = 1000;

impl RemoteState {
    /// The keys to verify with, or whether to fetch. `fetched` says this
    /// request already fetched once (it never fetches twice).
    pub fn keys(&self, remote: &RemoteJwks, now_ms: u64, unknown_kid: bool, fetched: bool) -> Keys {
        let may_fetch = !fetched && now_ms >= self.retry_at_ms;
        match &self.held {
            Some(held) => {
                let age = now_ms.saturating_sub(held.fetched_at_ms);
                let expired = age >= remote.cache_seconds.saturating_mul(1000);
                let rotated = unknown_kid && age >= remote.min_refetch_seconds.saturating_mul(1000);
                if may_fetch && (expired || rotated) {
                    Keys::Fetch
                } else {
                    Keys::Ready(Rc::clone(&held.jwks), held.fetched_at_ms)
                }
            }
            None if may_fetch => Keys::Fetch,
            None => Keys::Failed,
        }
    }

    /// Whether the root's timer should refresh now: ahead of expiry (at 80%
    /// of the cache time), or at start when asked to.
    pub fn refresh_due(&self, remote: &RemoteJwks, now_ms: u64) -> bool {
        if self.refreshing || now_ms < self.retry_at_ms {
            return false;
        }
        match &self.held {
            Some(held) => {
                let ahead = remote.cache_seconds.saturating_mul(800);
                now_ms.saturating_sub(held.fetched_at_ms) >= ahead
            }
            None => remote.fetch_at_start || self.failures > 0,
        }
    }

    /// Whether shared data should be read again.
    pub fn sync_due(&self, now_ms: u64) -> bool {
        self.synced_at_ms
            .is_none_or(|at| self.held.is_none() || now_ms.saturating_sub(at) >= SYNC_EVERY_MS)
    }

    /// Takes a set from shared data when it is newer than the held one.
    pub fn sync(&mut self, stored: Option<&[u8]>, now_ms: u64) {
        self.synced_at_ms = Some(now_ms);
        let Some((fetched_at_ms, body)) = stored.and_then(decode_stored) else {
            return;
        };
        if self
            .held
            .as_ref()
            .is_some_and(|h| h.fetched_at_ms >= fetched_at_ms)
        {
            return;
        }
        if let Ok(jwks) = Jwks::parse(body) {
            self.held = Some(Held {
                jwks: Rc::new(jwks),
                fetched_at_ms,
            });
            self.failures = 0;
            self.retry_at_ms = 0;
        }
    }

    /// Records a fetch: the body, checked, or why it failed. Returns what to
    /// put in shared data on success, and the problem on failure.
    pub fn fetched(
        &mut self,
        remote: &RemoteJwks,
        result: Result<&[u8], String>,
        now_ms: u64,
    ) -> Result<Vec<u8>, String> {
        self.refreshing = false;
        let parsed = result.and_then(|body| {
            if body.len() > remote.max_bytes {
                return Err(format!(
                    "the JWKS is {} bytes, over the {}-byte cap",
                    body.len(),
                    remote.max_bytes
                ));
            }
            Jwks::parse(body).map(|jwks| (jwks, body))
        });
        match parsed {
            Ok((jwks, body)) => {
                // Strictly newer than what any VM holds, even within a millisecond.
                let at = self
                    .held
                    .as_ref()
                    .map_or(now_ms, |h| now_ms.max(h.fetched_at_ms + 1));
                self.held = Some(Held {
                    jwks: Rc::new(jwks),
                    fetched_at_ms: at,
                });
                self.failures = 0;
                self.retry_at_ms = 0;
                self.synced_at_ms = Some(now_ms);
                Ok(encode_stored(at, body))
            }
            Err(problem) => {
                self.failures = self.failures.saturating_add(1);
                self.retry_at_ms = now_ms.saturating_add(backoff_ms(remote, self.failures));
                Err(problem)
            }
        }
    }
}

/// `retry_initial_ms · 2^(failures−1)`, at most `retry_max_ms`.
pub fn backoff_ms(remote: &RemoteJwks, failures: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(30);
    remote
        .retry_initial_ms
        .saturating_mul(1 << doublings)
        .min(remote.retry_max_ms)
}

pub fn encode_stored(fetched_at_ms: u64, body: &[u8]) -> Vec<u8> {
    let mut out = format!("{fetched_at_ms}\n").into_bytes();
    out.extend_from_slice(body);
    out
}

fn decode_stored(stored: &[u8]) -> Option<(u64, &[u8])> {
    let newline = stored.iter().position(|b| *b == b'\n')?;
    let (head, body) = stored.split_at(newline);
    let at = std::str::from_utf8(head).ok()?.parse().ok()?;
    Some((at, body.get(1..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWKS: &[u8] =
        br#"{"keys":[{"kty":"oct","kid":"a","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldCE"}]}"#;

    fn remote() -> RemoteJwks {
        RemoteJwks {
            cluster: "c".into(),
            authority: "c".into(),
            path: "/".into(),
            timeout_ms: 1000,
            cache_seconds: 10,
            max_bytes: 4096,
            retry_initial_ms: 1000,
            retry_max_ms: 4000,
            min_refetch_seconds: 5,
            fetch_at_start: false,
        }
    }

    #[test]
    fn fetch_then_ready_then_expired() {
        let r = remote();
        let mut s = RemoteState::default();
        assert!(matches!(s.keys(&r, 0, false, false), Keys::Fetch));
        s.fetched(&r, Ok(JWKS), 1000).unwrap();
        assert!(matches!(
            s.keys(&r, 2000, false, false),
            Keys::Ready(_, 1000)
        ));
        assert!(!s.refresh_due(&r, 8000));
        assert!(s.refresh_due(&r, 9000), "80% of 10 s after the fetch");
        assert!(matches!(s.keys(&r, 11_000, false, false), Keys::Fetch));
        // Never twice in one request.
        assert!(matches!(s.keys(&r, 11_000, false, true), Keys::Ready(..)));
    }

    #[test]
    fn unknown_kid_refetches_at_most_every_min_interval() {
        let r = remote();
        let mut s = RemoteState::default();
        s.fetched(&r, Ok(JWKS), 0).unwrap();
        assert!(matches!(s.keys(&r, 4000, true, false), Keys::Ready(..)));
        assert!(matches!(s.keys(&r, 5000, true, false), Keys::Fetch));
    }

    #[test]
    fn failures_back_off_and_keep_stale_keys() {
        let r = remote();
        let mut s = RemoteState::default();
        assert!(s.fetched(&r, Err("reset".into()), 0).is_err());
        assert!(matches!(s.keys(&r, 500, false, false), Keys::Failed));
        assert!(matches!(s.keys(&r, 1000, false, false), Keys::Fetch));
        assert!(s.fetched(&r, Ok(b"{not json"), 1000).is_err());
        assert_eq!(s.retry_at_ms, 3000, "2 s after the second failure");
        s.fetched(&r, Err("x".into()), 3000).unwrap_err();
        s.fetched(&r, Err("x".into()), 7000).unwrap_err();
        assert_eq!(s.retry_at_ms, 11_000, "capped at 4 s");
        s.fetched(&r, Ok(JWKS), 11_000).unwrap();
        s.fetched(&r, Err("x".into()), 30_000).unwrap_err();
        // Expired and failing: the stale keys still serve.
        assert!(matches!(s.keys(&r, 30_500, false, false), Keys::Ready(..)));
    }

    #[test]
    fn oversized_sets_are_refused() {
        let r = RemoteJwks {
            max_bytes: 16,
            ..remote()
        };
        let mut s = RemoteState::default();
        assert!(s.fetched(&r, Ok(JWKS), 0).unwrap_err().contains("cap"));
    }

    #[test]
    fn shared_data_carries_sets_between_vms() {
        let r = remote();
        let mut a = RemoteState::default();
        let stored = a.fetched(&r, Ok(JWKS), 5000).unwrap();
        let mut b = RemoteState::default();
        assert!(b.sync_due(0));
        b.sync(Some(&stored), 5100);
        assert!(matches!(
            b.keys(&r, 5200, false, false),
            Keys::Ready(_, 5000)
        ));
        assert!(!b.sync_due(5200));
        // An older copy never replaces a newer one.
        b.sync(Some(&encode_stored(10, JWKS)), 7000);
        assert_eq!(b.held.as_ref().unwrap().fetched_at_ms, 5000);
    }
}
