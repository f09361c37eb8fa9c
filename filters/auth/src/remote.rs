//! Remote key sets: when to fetch, what to keep, how to share. One VM's
//! fetch is stored in the proxy's shared data (`fetched_at_ms\n<JWKS>`), so
//! every worker VM of the plugin reads it instead of fetching its own. A
//! failed fetch keeps the old keys (stale, but better than refusing every
//! token) and retries with exponential back-off.
//!
//! The VMs agree through a fetch lock, also in shared data: a deadline,
//! taken by compare-and-swap, held while one VM fetches and after a failed
//! fetch until its retry time, so the others back off too and serve the
//! keys they have. [`SharedData`] is the proxy's shared data; the glue
//! implements it with host calls, tests with a map.

use std::rc::Rc;

use crate::config::RemoteJwks;
use crate::policy::Keys;
use jose::jwk::Jwks;

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

/// The proxy's data shared by the plugin's VMs (`proxy_get_shared_data`,
/// `proxy_set_shared_data`).
pub trait SharedData {
    /// A key's value and its compare-and-swap token.
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Stores `value` if `cas` is still the key's token (`None`: whatever
    /// it is); false when another VM wrote first or the store failed.
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
}

/// The shared-data key of a provider's key set: the same URL means the
/// same keys, whichever plugin fetched them.
pub fn shared_key(remote: &RemoteJwks) -> String {
    format!(
        "auth.jwks:{}:{}{}",
        remote.cluster, remote.authority, remote.path
    )
}

fn lock_key(remote: &RemoteJwks) -> String {
    format!("{}.lock", shared_key(remote))
}

/// Takes the fetch lock until `now_ms` + the fetch timeout, unless another
/// VM holds it (its deadline is still ahead) or takes it first.
fn take_lock(shared: &mut dyn SharedData, remote: &RemoteJwks, now_ms: u64) -> bool {
    let (held, cas) = shared.get(&lock_key(remote));
    let deadline = held
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    if deadline > now_ms {
        return false;
    }
    let until = now_ms.saturating_add(remote.timeout_ms).to_string();
    shared.set(&lock_key(remote), until.as_bytes(), cas)
}

/// Holds the lock until `until_ms` (0 releases it).
fn hold_lock(shared: &mut dyn SharedData, remote: &RemoteJwks, until_ms: u64) {
    let _ = shared.set(&lock_key(remote), until_ms.to_string().as_bytes(), None);
}

impl RemoteState {
    /// The keys a request verifies with, or whether it fetches, with the
    /// other VMs in view: a set one of them fetched is taken from shared
    /// data first, and when another VM holds the fetch lock the keys this
    /// VM has are served instead of fetching as well.
    pub fn keys_shared(
        &mut self,
        shared: &mut dyn SharedData,
        remote: &RemoteJwks,
        now_ms: u64,
        unknown_kid: bool,
        fetched: bool,
    ) -> Keys {
        self.sync_from(shared, remote, now_ms);
        match (self.keys(remote, now_ms, unknown_kid, fetched), &self.held) {
            (Keys::Fetch, Some(held)) if !take_lock(shared, remote, now_ms) => {
                Keys::Ready(Rc::clone(&held.jwks), held.fetched_at_ms)
            }
            (keys, _) => keys,
        }
    }

    /// Whether the root's timer starts a refresh now: one is due (see
    /// [`Self::refresh_due`]) and this VM took the fetch lock.
    pub fn start_refresh(
        &mut self,
        shared: &mut dyn SharedData,
        remote: &RemoteJwks,
        now_ms: u64,
    ) -> bool {
        self.sync_from(shared, remote, now_ms);
        self.refresh_due(remote, now_ms) && take_lock(shared, remote, now_ms)
    }

    /// Records a finished fetch (see [`Self::fetched`]) and tells the other
    /// VMs: the new set goes to shared data and the lock is released; after
    /// a failure the lock is held until this VM's retry time, so every VM
    /// backs off. Returns the number of keys, or the problem.
    pub fn finish_fetch(
        &mut self,
        shared: &mut dyn SharedData,
        remote: &RemoteJwks,
        result: Result<&[u8], String>,
        now_ms: u64,
    ) -> Result<usize, String> {
        match self.fetched(remote, result, now_ms) {
            Ok(stored) => {
                if !shared.set(&shared_key(remote), &stored, None) {
                    log::warn!("auth: could not share the JWKS");
                }
                hold_lock(shared, remote, 0);
                Ok(self.held.as_ref().map_or(0, |h| h.jwks.keys.len()))
            }
            Err(problem) => {
                hold_lock(shared, remote, self.retry_at_ms);
                Err(problem)
            }
        }
    }

    /// Reads shared data for a set another VM fetched, when a read is due.
    fn sync_from(&mut self, shared: &dyn SharedData, remote: &RemoteJwks, now_ms: u64) {
        if self.sync_due(now_ms) {
            let (stored, _) = shared.get(&shared_key(remote));
            self.sync(stored.as_deref(), now_ms);
        }
    }

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

    /// Shared data as the proxy keeps it: a value and a CAS token per key,
    /// the token bumped on every write.
    #[derive(Default)]
    struct Shared(std::collections::HashMap<String, (Vec<u8>, u32)>);

    impl SharedData for Shared {
        fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            self.0
                .get(key)
                .map_or((None, None), |(v, cas)| (Some(v.clone()), Some(*cas)))
        }

        fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
            let current = self.0.get(key).map(|(_, c)| *c);
            if cas.is_some() && cas != current {
                return false;
            }
            let next = current.unwrap_or(0) + 1;
            self.0.insert(key.to_owned(), (value.to_vec(), next));
            true
        }
    }

    /// Two VMs holding the set fetched at `at`.
    fn two_vms_holding(shared: &mut Shared, r: &RemoteJwks, at: u64) -> (RemoteState, RemoteState) {
        let mut a = RemoteState::default();
        a.finish_fetch(shared, r, Ok(JWKS), at).unwrap();
        let mut b = RemoteState::default();
        assert!(matches!(
            b.keys_shared(shared, r, at, false, false),
            Keys::Ready(_, g) if g == at
        ));
        (a, b)
    }

    /// `vm` finds its set expired at `at` and fetches (taking the lock).
    fn starts_fetching(vm: &mut RemoteState, shared: &mut Shared, r: &RemoteJwks, at: u64) {
        assert!(matches!(
            vm.keys_shared(shared, r, at, false, false),
            Keys::Fetch
        ));
    }

    #[test]
    fn one_vm_fetches_an_expired_set_while_the_others_serve_theirs() {
        let r = remote();
        let mut shared = Shared::default();
        let (mut a, mut b) = two_vms_holding(&mut shared, &r, 1000);
        let expired = 1000 + 10_000;
        starts_fetching(&mut a, &mut shared, &r, expired);
        assert!(
            matches!(
                b.keys_shared(&mut shared, &r, expired, false, false),
                Keys::Ready(_, 1000)
            ),
            "B serves its keys while A holds the lock"
        );
        // A's fetch lands: shared, the lock released, and B takes the new
        // set from shared data at its next read instead of fetching.
        assert_eq!(
            a.finish_fetch(&mut shared, &r, Ok(JWKS), expired + 5),
            Ok(1)
        );
        let later = expired + 5 + SYNC_EVERY_MS;
        assert!(matches!(
            b.keys_shared(&mut shared, &r, later, false, false),
            Keys::Ready(_, g) if g == expired + 5
        ));
    }

    #[test]
    fn a_failed_fetch_holds_every_vm_back_until_the_retry_time() {
        // A retry later than the fetch timeout, so the lock's extension shows.
        let r = RemoteJwks {
            retry_initial_ms: 3000,
            ..remote()
        };
        let mut shared = Shared::default();
        let (mut a, mut b) = two_vms_holding(&mut shared, &r, 1000);
        let expired = 11_000;
        starts_fetching(&mut a, &mut shared, &r, expired);
        assert_eq!(
            a.finish_fetch(&mut shared, &r, Err("status 500".into()), expired),
            Err("status 500".into())
        );
        let retry = a.retry_at_ms;
        assert_eq!(retry, expired + r.retry_initial_ms);
        // The fetch timeout is long past, but the lock now lasts until the
        // retry time: B serves its stale keys rather than fetch.
        let before_retry = retry - 1;
        assert!(before_retry > expired + r.timeout_ms - 1);
        assert!(matches!(
            b.keys_shared(&mut shared, &r, before_retry, false, false),
            Keys::Ready(_, 1000)
        ));
        assert!(matches!(
            b.keys_shared(&mut shared, &r, retry, false, false),
            Keys::Fetch
        ));
    }

    #[test]
    fn a_lock_whose_fetch_never_finished_expires_with_the_fetch_timeout() {
        let r = remote();
        let mut shared = Shared::default();
        let (mut a, mut b) = two_vms_holding(&mut shared, &r, 1000);
        let expired = 11_000;
        starts_fetching(&mut a, &mut shared, &r, expired);
        // A's VM died mid-fetch: B waits out the fetch timeout, then fetches.
        assert!(matches!(
            b.keys_shared(&mut shared, &r, expired + r.timeout_ms - 1, false, false),
            Keys::Ready(..)
        ));
        assert!(matches!(
            b.keys_shared(&mut shared, &r, expired + r.timeout_ms, false, false),
            Keys::Fetch
        ));
    }

    #[test]
    fn only_one_timer_starts_a_refresh() {
        let r = remote();
        let mut shared = Shared::default();
        let (mut a, mut b) = two_vms_holding(&mut shared, &r, 1000);
        let due = 1000 + 8000;
        assert!(a.start_refresh(&mut shared, &r, due));
        assert!(!b.start_refresh(&mut shared, &r, due));
    }

    #[test]
    fn the_lock_is_taken_by_compare_and_swap() {
        let r = remote();
        let mut shared = Shared::default();
        // B read the free lock, then A took it: B's write carries a stale
        // token and fails, so only A fetches.
        let (_, stale) = shared.get(&lock_key(&r));
        assert!(take_lock(&mut shared, &r, 100));
        assert!(!shared.set(&lock_key(&r), b"200", stale.or(Some(0))));
        assert!(!take_lock(&mut shared, &r, 100));
    }
}
