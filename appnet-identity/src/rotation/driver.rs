//! The async shell around [`RotationSchedule`]: fetches SVIDs from a
//! [`CertificateSource`] when the schedule says, and publishes them on the
//! credentials channel the TLS configs read.

use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::clock::Clock;
use super::schedule::{RefreshPolicy, RotationSchedule, Validity};
use crate::tls::{Credentials, CredentialsReceiver, TlsError};
use crate::{Svid, TrustBundle};

/// Where new SVIDs come from: a CA client (the Istio CSR API, the SPIFFE
/// Workload API), or a local CA in tests.
///
/// Implementations may write `async fn fetch(&self) -> Result<..>` as long
/// as the future is `Send`.
pub trait CertificateSource: Send + Sync + 'static {
    /// Why a fetch failed.
    type Error: StdError + Send + Sync + 'static;

    /// Obtains a new SVID (with a fresh key), and optionally a new trust
    /// bundle.
    fn fetch(&self) -> impl Future<Output = Result<Renewal, Self::Error>> + Send;
}

/// What a [`CertificateSource`] returns.
///
/// The trust bundle has two writers: a source that learns roots along with
/// the SVID (the SPIFFE Workload API) sets `bundle`, and the owner of the
/// [`RotationHandle`] may call
/// [`update_bundle`](RotationHandle::update_bundle). The latest write wins;
/// a renewal without a bundle keeps the bundle currently published.
#[derive(Debug, Clone)]
pub struct Renewal {
    /// The new SVID.
    pub svid: Svid,
    /// A new trust bundle, or `None` to keep the current one.
    pub bundle: Option<TrustBundle>,
}

impl From<Svid> for Renewal {
    fn from(svid: Svid) -> Self {
        Self { svid, bundle: None }
    }
}

/// Why an attempt to renew or republish credentials failed. The
/// credentials already published stay published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RotationError {
    /// The certificate source failed.
    #[error("certificate source failed: {0}")]
    Source(Box<dyn StdError + Send + Sync + 'static>),
    /// The SVID's private key cannot be used for TLS.
    #[error(transparent)]
    Credentials(#[from] TlsError),
    /// The source returned a certificate that is already due for refresh
    /// (it was published, and the next attempt backs off).
    #[error("the source returned a certificate already due for refresh (expires {not_after:?})")]
    Stale {
        /// The stale certificate's notAfter.
        not_after: SystemTime,
    },
}

/// What the rotation task has done so far.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RotationStatus {
    /// Attempts that have failed in a row since the last good renewal
    /// (stale renewals count as failures).
    pub failures: u32,
    /// The most recent failure, kept after later successes.
    pub last_error: Option<Arc<RotationError>>,
    /// SVIDs fetched and published, the first one included.
    pub renewals: u64,
    /// When the last SVID was published.
    pub last_renewal: Option<SystemTime>,
    /// When the next attempt is planned.
    pub next_attempt: Option<SystemTime>,
}

/// A running rotation: the writer of the credentials channel and the task
/// that renews them.
///
/// Dropping the handle (or calling [`stop`](Self::stop)) ends the task; an
/// in-flight fetch is cancelled. Receivers obtained from
/// [`credentials`](Self::credentials) keep the last credentials published.
#[derive(Debug)]
pub struct RotationHandle {
    credentials: watch::Sender<Arc<Credentials>>,
    status: watch::Receiver<RotationStatus>,
    task: JoinHandle<()>,
}

impl RotationHandle {
    /// Fetches the first credentials from `source`, retrying with the
    /// policy's backoff until it succeeds, publishes them with `bundle`
    /// (unless the source brings its own), and spawns the task that keeps
    /// them fresh on the [`RotationSchedule`] of `policy`, reading time from
    /// `clock`.
    ///
    /// This does not return while the source keeps failing; bound it with
    /// `tokio::time::timeout` if needed. Failures are logged with `tracing`,
    /// and the last one is kept in [`status`](Self::status).
    ///
    /// # Panics
    /// When called outside a tokio runtime (it spawns a task).
    pub async fn start<S, C>(
        source: S,
        bundle: TrustBundle,
        clock: C,
        policy: RefreshPolicy,
    ) -> Self
    where
        S: CertificateSource,
        C: Clock,
    {
        let schedule = RotationSchedule::new(policy);
        let mut status = RotationStatus::default();
        let first = loop {
            match fetch_credentials(&source, &bundle).await {
                Ok(credentials) => break credentials,
                Err(e) => {
                    status.failures = status.failures.saturating_add(1);
                    let wait = schedule.backoff(status.failures);
                    tracing::warn!(
                        error = %e,
                        failures = status.failures,
                        ?wait,
                        "initial SVID fetch failed"
                    );
                    status.last_error = Some(Arc::new(e));
                    tokio::time::sleep(wait).await;
                }
            }
        };
        let validity = Validity::from(first.svid());
        let status_failures = status.failures;
        let (credentials, _) = watch::channel(Arc::new(first));
        let (status_tx, status_rx) = watch::channel(status);
        let task = RotationTask {
            source,
            clock,
            schedule,
            credentials: credentials.clone(),
            status: status_tx,
        };
        let (sample, failures) = task.renewed(validity, status_failures);
        let task = tokio::spawn(task.run(sample, failures));
        Self {
            credentials,
            status: status_rx,
            task,
        }
    }

    /// A receiver of the credentials, for [`tls::server_config`] and
    /// [`tls::client_config`]: new handshakes use the latest credentials,
    /// live connections are untouched.
    ///
    /// [`tls::server_config`]: crate::tls::server_config
    /// [`tls::client_config`]: crate::tls::client_config
    pub fn credentials(&self) -> CredentialsReceiver {
        self.credentials.subscribe()
    }

    /// The credentials published now.
    pub fn current(&self) -> Arc<Credentials> {
        Arc::clone(&self.credentials.borrow())
    }

    /// A snapshot of the task's status.
    pub fn status(&self) -> RotationStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn status_updates(&self) -> watch::Receiver<RotationStatus> {
        self.status.clone()
    }

    /// Publishes `bundle` with the current SVID, for root rotation: push
    /// the old and new roots together, then, once every workload has a
    /// certificate from the new root, the new roots alone.
    ///
    /// # Errors
    /// [`RotationError::Credentials`] if the credentials cannot be rebuilt;
    /// the previous ones stay published.
    pub fn update_bundle(&self, bundle: TrustBundle) -> Result<(), RotationError> {
        republish(&self.credentials, |current| {
            Credentials::new(current.svid().clone(), bundle)
        })
    }

    /// Whether the task is still running.
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Stops the task and waits for it to end.
    pub async fn stop(mut self) {
        self.task.abort();
        // The task never panics by itself; a panic in the source, or the
        // cancellation just requested, ends it just the same.
        let _ = (&mut self.task).await;
    }
}

impl Drop for RotationHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Fetches from `source` and prepares credentials, with `bundle` unless the
/// source brought one.
async fn fetch_credentials<S: CertificateSource>(
    source: &S,
    bundle: &TrustBundle,
) -> Result<Credentials, RotationError> {
    let renewal = source
        .fetch()
        .await
        .map_err(|e| RotationError::Source(Box::new(e)))?;
    let bundle = renewal.bundle.unwrap_or_else(|| bundle.clone());
    Ok(Credentials::new(renewal.svid, bundle)?)
}

/// The spawned side of a [`RotationHandle`].
struct RotationTask<S, C> {
    source: S,
    clock: C,
    schedule: RotationSchedule,
    credentials: watch::Sender<Arc<Credentials>>,
    status: watch::Sender<RotationStatus>,
}

impl<S: CertificateSource, C: Clock> RotationTask<S, C> {
    /// Sleeps until the schedule says, renews, and again, for ever.
    async fn run(self, mut sample: f64, mut failures: u32) {
        loop {
            let validity = Validity::from(self.credentials.borrow().svid());
            let now = self.clock.now();
            let wait = self.schedule.wait(validity, now, sample, failures);
            self.status
                .send_modify(|s| s.next_attempt = now.checked_add(wait));
            tokio::time::sleep(wait).await;
            match self.renew().await {
                Ok(validity) => (sample, failures) = self.renewed(validity, failures),
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(
                        error = %e,
                        failures,
                        "SVID renewal failed; keeping the current one"
                    );
                    self.failed(failures, e);
                }
            }
        }
    }

    /// One attempt: fetch, then publish with the bundle published now
    /// unless the source brought one.
    async fn renew(&self) -> Result<Validity, RotationError> {
        let Renewal { svid, bundle } = self
            .source
            .fetch()
            .await
            .map_err(|e| RotationError::Source(Box::new(e)))?;
        let validity = Validity::from(&svid);
        republish(&self.credentials, |current| {
            let bundle = bundle.unwrap_or_else(|| current.bundle().clone());
            Credentials::new(svid, bundle)
        })?;
        Ok(validity)
    }

    /// Records a published SVID; returns the jitter sample for it and the
    /// failure count to schedule with: zero, or one more than `failures`
    /// (the count before this attempt) if it is already due.
    fn renewed(&self, validity: Validity, failures: u32) -> (f64, u32) {
        let sample: f64 = rand::random();
        let now = self.clock.now();
        let stale = self.schedule.is_due(validity, now, sample);
        self.status.send_modify(|s| {
            s.renewals = s.renewals.saturating_add(1);
            s.last_renewal = Some(now);
            s.failures = 0;
        });
        tracing::info!(not_after = ?validity.not_after, "published a new SVID");
        if stale {
            let e = RotationError::Stale {
                not_after: validity.not_after,
            };
            tracing::warn!(error = %e, "stale SVID");
            let failures = failures.saturating_add(1);
            self.failed(failures, e);
            return (sample, failures);
        }
        (sample, 0)
    }

    fn failed(&self, failures: u32, error: RotationError) {
        self.status.send_modify(|s| {
            s.failures = failures;
            s.last_error = Some(Arc::new(error));
        });
    }
}

/// Builds new credentials from the published ones and publishes them, as a
/// read-modify-write under the channel's lock so that an SVID renewal and a
/// concurrent bundle update never overwrite each other. On error the
/// current credentials stay published.
fn republish(
    credentials: &watch::Sender<Arc<Credentials>>,
    build: impl FnOnce(&Credentials) -> Result<Credentials, TlsError>,
) -> Result<(), RotationError> {
    let mut outcome = Ok(());
    credentials.send_if_modified(|current| match build(current) {
        Ok(next) => {
            *current = Arc::new(next);
            true
        }
        Err(e) => {
            outcome = Err(RotationError::Credentials(e));
            false
        }
    });
    outcome
}
