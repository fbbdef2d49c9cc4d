//! The tokio driver, on paused time, against a real CA.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use appnet_identity::rotation::{
    CertificateSource, Clock, RefreshPolicy, Renewal, RotationError, RotationHandle, TokioClock,
};
use appnet_identity::{
    CaError, CertificateAuthority, SpiffeBundle, SpiffeId, TrustBundle, verify_svid,
};

const T0: u64 = 1_700_000_000;
const TTL: Duration = Duration::from_secs(100);

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// What the test tells the fake CA, and what it saw.
#[derive(Debug, Default)]
struct Control {
    /// Fetches still to fail; `u32::MAX` fails for ever.
    failing: AtomicU32,
    /// Issue certificates this far in the past.
    backdate: Mutex<Duration>,
    /// A bundle to hand out with the next SVID.
    bundle: Mutex<Option<TrustBundle>>,
    /// When each fetch happened.
    attempts: Mutex<Vec<SystemTime>>,
}

impl Control {
    fn attempts(&self) -> Vec<u64> {
        self.attempts
            .lock()
            .unwrap()
            .iter()
            .map(|t| t.duration_since(at(T0)).unwrap().as_secs())
            .collect()
    }

    fn fail(&self, times: u32) {
        self.failing.store(times, Ordering::SeqCst);
    }
}

#[derive(Debug, thiserror::Error)]
enum FakeError {
    #[error("CA unavailable")]
    Unavailable,
    #[error(transparent)]
    Ca(#[from] CaError),
}

/// A source issuing from a real CA at the test clock's time.
struct FakeCa {
    ca: CertificateAuthority,
    id: SpiffeId,
    clock: TokioClock,
    control: Arc<Control>,
}

impl CertificateSource for FakeCa {
    type Error = FakeError;

    async fn fetch(&self) -> Result<Renewal, FakeError> {
        let now = self.clock.now();
        self.control.attempts.lock().unwrap().push(now);
        let left = self.control.failing.load(Ordering::SeqCst);
        if left > 0 {
            if left != u32::MAX {
                self.control.failing.store(left - 1, Ordering::SeqCst);
            }
            return Err(FakeError::Unavailable);
        }
        let issued_at = now - *self.control.backdate.lock().unwrap();
        let svid = self.ca.issue_svid(&self.id, issued_at, TTL)?;
        let bundle = self.control.bundle.lock().unwrap().take();
        Ok(Renewal { svid, bundle })
    }
}

struct Fixture {
    source: FakeCa,
    control: Arc<Control>,
    clock: TokioClock,
    bundle: TrustBundle,
}

fn root() -> CertificateAuthority {
    let td = "cluster.local".parse().unwrap();
    CertificateAuthority::generate_root(td, at(T0 - 3600), Duration::from_secs(86400)).unwrap()
}

/// Must run inside the paused runtime, so the clock starts at `T0`.
fn fixture() -> Fixture {
    let ca = root();
    let bundle = TrustBundle::from(ca.bundle().unwrap());
    let clock = TokioClock::starting_at(at(T0));
    let control = Arc::new(Control::default());
    let source = FakeCa {
        ca,
        id: "spiffe://cluster.local/ns/default/sa/web".parse().unwrap(),
        clock,
        control: Arc::clone(&control),
    };
    Fixture {
        source,
        control,
        clock,
        bundle,
    }
}

fn no_jitter() -> RefreshPolicy {
    let mut policy = RefreshPolicy::default();
    policy.jitter = 0.0;
    policy
}

async fn sleep_until(clock: &TokioClock, secs_after_t0: u64) {
    let left = at(T0 + secs_after_t0).duration_since(clock.now()).unwrap();
    tokio::time::sleep(left).await;
}

#[tokio::test(start_paused = true)]
async fn tokio_clock_follows_paused_time() {
    let clock = TokioClock::starting_at(at(T0));
    assert_eq!(clock.now(), at(T0));
    tokio::time::sleep(Duration::from_secs(90)).await;
    assert_eq!(clock.now(), at(T0 + 90));
}

#[tokio::test(start_paused = true)]
async fn rotates_at_half_life() {
    let f = fixture();
    let handle = RotationHandle::start(f.source, f.bundle, f.clock, no_jitter()).await;
    let mut rx = handle.credentials();
    let first = Arc::clone(&rx.borrow_and_update());
    assert_eq!(first.svid().not_before(), at(T0));

    rx.changed().await.unwrap();
    assert_eq!(f.clock.now(), at(T0 + 50));
    let second = Arc::clone(&rx.borrow_and_update());
    assert_ne!(second.svid().chain()[0], first.svid().chain()[0]);
    assert_eq!(second.svid().not_before(), at(T0 + 50));
    assert_eq!(second.svid().not_after(), at(T0 + 150));

    rx.changed().await.unwrap();
    assert_eq!(f.clock.now(), at(T0 + 100));
    assert_eq!(rx.borrow().svid().not_before(), at(T0 + 100));

    assert_eq!(f.control.attempts(), [0, 50, 100]);
    let status = handle.status();
    assert_eq!(status.renewals, 3);
    assert_eq!(status.failures, 0);
    assert!(status.last_error.is_none());
    assert_eq!(status.last_renewal, Some(at(T0 + 100)));
    assert_eq!(status.next_attempt, Some(at(T0 + 150)));
}

#[tokio::test(start_paused = true)]
async fn default_policy_rotates_within_the_jitter_window() {
    let f = fixture();
    let handle = RotationHandle::start(f.source, f.bundle, f.clock, RefreshPolicy::default()).await;
    let mut rx = handle.credentials();
    let mut offsets = Vec::new();
    for _ in 0..8 {
        let not_before = rx.borrow_and_update().svid().not_before();
        rx.changed().await.unwrap();
        offsets.push(f.clock.now().duration_since(not_before).unwrap());
    }
    // [45, 55) s of a 100 s lifetime, plus tokio's 1 ms timer granularity.
    let window = Duration::from_secs(45)..=Duration::from_millis(55_001);
    for offset in &offsets {
        assert!(window.contains(offset), "{offsets:?}");
    }
    // The sample is drawn per certificate: eight draws are not all equal.
    assert!(offsets.iter().any(|o| *o != offsets[0]), "{offsets:?}");
}

#[tokio::test(start_paused = true)]
async fn initial_fetch_retries_with_backoff() {
    let f = fixture();
    f.control.fail(3);
    let handle = RotationHandle::start(f.source, f.bundle, f.clock, no_jitter()).await;
    assert_eq!(f.clock.now(), at(T0 + 7));
    assert_eq!(f.control.attempts(), [0, 1, 3, 7]);
    assert_eq!(handle.current().svid().not_before(), at(T0 + 7));
    let status = handle.status();
    assert_eq!(status.failures, 0);
    assert_eq!(status.renewals, 1);
    assert!(matches!(
        status.last_error.as_deref(),
        Some(RotationError::Source(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_and_keep_the_current_credentials() {
    let f = fixture();
    let handle = RotationHandle::start(f.source, f.bundle, f.clock, no_jitter()).await;
    let rx = handle.credentials();
    let first = handle.current();
    f.control.fail(u32::MAX);

    sleep_until(&f.clock, 60).await;
    assert_eq!(f.control.attempts(), [0, 50, 51, 53, 57]);
    assert!(Arc::ptr_eq(&rx.borrow(), &first));
    assert!(!rx.has_changed().unwrap());
    let status = handle.status();
    assert_eq!(status.failures, 4);
    assert_eq!(status.next_attempt, Some(at(T0 + 65)));
    let error = status.last_error.unwrap();
    assert!(matches!(*error, RotationError::Source(_)));
    assert_eq!(
        error.to_string(),
        "certificate source failed: CA unavailable"
    );

    // The CA comes back: the next retry (57 + 8) succeeds.
    f.control.fail(0);
    sleep_until(&f.clock, 70).await;
    assert_eq!(f.control.attempts(), [0, 50, 51, 53, 57, 65]);
    assert_eq!(rx.borrow().svid().not_before(), at(T0 + 65));
    let status = handle.status();
    assert_eq!(status.failures, 0);
    assert_eq!(status.renewals, 2);
    assert!(status.last_error.is_some(), "the last error stays visible");
}

#[tokio::test(start_paused = true)]
async fn retries_stop_just_before_expiry_then_back_off_past_it() {
    let f = fixture();
    let handle = RotationHandle::start(f.source, f.bundle, f.clock, no_jitter()).await;
    let first = handle.current();
    f.control.fail(u32::MAX);

    sleep_until(&f.clock, 560).await;
    // 81 + 32 = 113 is past notAfter (100): the last try before expiry is
    // at 99; after it the backoff pace goes on (64, 128, 256 s).
    assert_eq!(
        f.control.attempts(),
        [0, 50, 51, 53, 57, 65, 81, 99, 163, 291, 547]
    );
    // Expired, but nothing better exists: it is still what is published.
    assert!(Arc::ptr_eq(&handle.current(), &first));
    assert_eq!(handle.status().failures, 10);
}

#[tokio::test(start_paused = true)]
async fn stale_certificates_count_as_failures() {
    let f = fixture();
    // Each certificate is 80 s into its 100 s lifetime when it arrives.
    *f.control.backdate.lock().unwrap() = Duration::from_secs(80);
    let handle = RotationHandle::start(f.source, f.bundle, f.clock, no_jitter()).await;
    sleep_until(&f.clock, 10).await;
    assert_eq!(f.control.attempts(), [0, 1, 3, 7]);
    let status = handle.status();
    assert_eq!(status.renewals, 4);
    assert_eq!(status.failures, 4);
    assert!(matches!(
        status.last_error.as_deref(),
        Some(RotationError::Stale { .. })
    ));
    // Each was still published: it is the freshest there is.
    assert_eq!(handle.current().svid().not_before(), at(T0 + 7 - 80));
}

#[tokio::test(start_paused = true)]
async fn bundle_update_is_published_with_the_same_svid() {
    let f = fixture();
    let old_root = f
        .bundle
        .get(&"cluster.local".parse().unwrap())
        .unwrap()
        .roots()[0]
        .clone();
    let handle = RotationHandle::start(f.source, f.bundle, f.clock, no_jitter()).await;
    let mut rx = handle.credentials();
    let first = Arc::clone(&rx.borrow_and_update());

    // A new root, and a workload certificate it issued.
    let new_ca = root();
    let id: SpiffeId = "spiffe://cluster.local/ns/default/sa/db".parse().unwrap();
    let peer = new_ca.issue_svid(&id, at(T0), TTL).unwrap();
    let td = new_ca.trust_domain().clone();
    let new_root = new_ca.root().clone();
    let both =
        TrustBundle::from(SpiffeBundle::new(td.clone(), vec![old_root, new_root.clone()]).unwrap());
    let new_only = TrustBundle::from(SpiffeBundle::new(td, vec![new_root]).unwrap());
    // Not trusted before the bundle update.
    let refused = verify_svid(peer.chain(), first.bundle(), at(T0));
    assert!(refused.is_err(), "{refused:?}");

    handle.update_bundle(both.clone()).unwrap();
    assert!(rx.has_changed().unwrap());
    let during = Arc::clone(&rx.borrow_and_update());
    assert_eq!(during.bundle(), &both);
    assert_eq!(during.svid().chain(), first.svid().chain());
    assert_eq!(
        verify_svid(peer.chain(), during.bundle(), at(T0))
            .unwrap()
            .id,
        id
    );
    verify_svid(first.svid().chain(), during.bundle(), at(T0)).unwrap();

    handle.update_bundle(new_only.clone()).unwrap();
    let after = Arc::clone(&rx.borrow_and_update());
    assert_eq!(after.bundle(), &new_only);
    assert_eq!(after.svid().chain(), first.svid().chain());
    assert!(verify_svid(first.svid().chain(), after.bundle(), at(T0)).is_err());

    // The next renewal brings no bundle: the pushed one stays.
    rx.changed().await.unwrap();
    assert_eq!(f.clock.now(), at(T0 + 50));
    let renewed = rx.borrow();
    assert_ne!(renewed.svid().chain()[0], first.svid().chain()[0]);
    assert_eq!(renewed.bundle(), &new_only);
}

#[tokio::test(start_paused = true)]
async fn a_bundle_from_the_source_replaces_the_published_one() {
    let f = fixture();
    let control = Arc::clone(&f.control);
    let handle = RotationHandle::start(f.source, f.bundle.clone(), f.clock, no_jitter()).await;
    assert_eq!(handle.current().bundle(), &f.bundle);
    let other = TrustBundle::from(root().bundle().unwrap());
    *control.bundle.lock().unwrap() = Some(other.clone());
    let mut rx = handle.credentials();
    rx.changed().await.unwrap();
    assert_eq!(rx.borrow().bundle(), &other);
    assert_eq!(rx.borrow().svid().not_before(), at(T0 + 50));
}

#[tokio::test(start_paused = true)]
async fn stop_ends_the_task() {
    let f = fixture();
    let handle = RotationHandle::start(f.source, f.bundle, f.clock, no_jitter()).await;
    let mut rx = handle.credentials();
    assert!(handle.is_running());
    handle.stop().await;
    tokio::time::sleep(Duration::from_secs(200)).await;
    assert_eq!(f.control.attempts(), [0]);
    // Every writer is gone; the last credentials remain readable.
    assert!(rx.changed().await.is_err());
    assert_eq!(rx.borrow().svid().not_before(), at(T0));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_handle_stops_rotation() {
    let f = fixture();
    let handle = RotationHandle::start(f.source, f.bundle, f.clock, no_jitter()).await;
    let mut rx = handle.credentials();
    drop(handle);
    tokio::time::sleep(Duration::from_secs(200)).await;
    assert_eq!(f.control.attempts(), [0]);
    assert!(rx.changed().await.is_err());
}
