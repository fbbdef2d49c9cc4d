//! A tower middleware that rate-limits HTTP requests to an LLM backend;
//! the flow is described on [`RateLimit`].

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::{fmt, mem};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::cost::Usage;
use super::error::RateLimitError;
use super::limiter::{LimitRequest, RateLimiter};
use super::permit::Permit;

/// Where an admitted request's usage is reported; found in the request's
/// extensions. Clones share one slot; the latest record wins. Record before
/// the body yields its last frame: the permit is settled when it does.
#[derive(Debug, Clone, Default)]
pub struct UsageRecorder(Arc<Mutex<Option<Usage>>>);

impl UsageRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the request's usage so far (replacing any earlier record).
    pub fn record(&self, usage: Usage) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(usage);
    }

    /// The latest recorded usage.
    pub fn usage(&self) -> Option<Usage> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Builds [`RateLimit`] services.
pub struct RateLimitLayer<E> {
    limiter: RateLimiter,
    extract: Arc<E>,
    quota_headers: bool,
}

impl<E> RateLimitLayer<E> {
    /// A layer that limits with `limiter`, reading each request's
    /// [`LimitRequest`] with `extract`. The extractor sees only the request
    /// head; put a token estimate made from the body in the request's
    /// extensions beforehand and read it from there.
    pub fn new(limiter: RateLimiter, extract: E) -> Self {
        Self {
            limiter,
            extract: Arc::new(extract),
            quota_headers: false,
        }
    }

    /// Also adds the permit's `x-ratelimit-*` headers (its tightest enforced
    /// limit, as reserved) to admitted responses, replacing any the inner
    /// service set.
    pub fn with_quota_headers(mut self) -> Self {
        self.quota_headers = true;
        self
    }
}

impl<E> Clone for RateLimitLayer<E> {
    fn clone(&self) -> Self {
        Self {
            limiter: self.limiter.clone(),
            extract: Arc::clone(&self.extract),
            quota_headers: self.quota_headers,
        }
    }
}

impl<E> fmt::Debug for RateLimitLayer<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limiter", &self.limiter)
            .field("quota_headers", &self.quota_headers)
            .finish_non_exhaustive()
    }
}

impl<S, E> Layer<S> for RateLimitLayer<E> {
    type Service = RateLimit<S, E>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
            extract: Arc::clone(&self.extract),
            quota_headers: self.quota_headers,
        }
    }
}

/// Rate-limits HTTP requests to an LLM backend `S`.
///
/// [`RateLimit`] asks a user-supplied extractor for each request's
/// [`LimitRequest`] and reserves it on a [`RateLimiter`]:
/// - rejected: the middleware answers itself, without calling the inner
///   service — `429 Too Many Requests` with `retry-after` and
///   `x-ratelimit-*` for [`RateLimitError::Limited`], `403 Forbidden` for a
///   model the principal may not use, `503 Service Unavailable` with
///   `retry-after: 1` for a full key table; the body is empty;
/// - admitted: the request goes to the inner service with a fresh
///   [`UsageRecorder`] in its extensions. Whoever learns the usage (the
///   inner service, or a body adapter that parses the LLM's final `usage`
///   chunk) records it there. The response body is wrapped in a
///   [`RateLimitBody`] that settles the permit:
///   - when the body ends: with the recorded usage, or with the reservation
///     as the cost if none was recorded;
///   - when the body fails or is dropped before its end (the client went
///     away): with the recorded usage if there is one, otherwise under the
///     limiter's [`CancelPolicy`](super::CancelPolicy);
///   - when the inner service fails: under the cancel policy.
///
///   Each permit is settled exactly once.
///
/// Usage travels through the request's extensions rather than the response
/// because the usage of a streamed completion is only known once its last
/// chunk has gone by, long after the response head.
///
/// Readiness is the inner service's; a rejected request leaves the readiness
/// it was granted unused (for the next call).
///
/// # Example
/// ```
/// use std::convert::Infallible;
/// use std::time::Duration;
/// use appnet_policy::{
///     LimitKey, LimitRequest, LimitSpec, LimitUnit, RateLimit, RateLimiter, Usage, UsageRecorder,
/// };
/// use http::{Request, Response};
/// use http_body_util::Full;
/// use tower::{Layer, service_fn};
///
/// let limiter = RateLimiter::builder()
///     .limit(LimitSpec::new(
///         "tpm", LimitUnit::Tokens, 100_000, Duration::from_secs(60), LimitKey::PerPrincipal,
///     ))
///     .build()?;
/// // Who and what: here from headers; a real proxy reads the peer identity
/// // and the JSON body (an earlier layer can leave them in extensions).
/// let extract = |req: &Request<String>| {
///     let principal = req.headers().get("x-principal").and_then(|v| v.to_str().ok());
///     LimitRequest::new(principal.unwrap_or("anonymous").to_owned(), "gpt-4o")
///         .with_tokens(req.body().len() as u64 / 4, 1_024)
/// };
/// let upstream = service_fn(|req: Request<String>| async move {
///     // ...forward to the model; once its usage is known, report it:
///     if let Some(recorder) = req.extensions().get::<UsageRecorder>() {
///         recorder.record(Usage::new(12, 30));
///     }
///     Ok::<_, Infallible>(Response::new(Full::new(bytes::Bytes::from("{}"))))
/// });
/// let service = RateLimit::layer(limiter, extract).with_quota_headers().layer(upstream);
/// # fn is_service<S: tower::Service<Request<String>>>(_: &S) {}
/// # is_service(&service);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RateLimit<S, E> {
    inner: S,
    limiter: RateLimiter,
    extract: Arc<E>,
    quota_headers: bool,
}

impl<S, E> RateLimit<S, E> {
    /// Wraps `inner` (see [`RateLimitLayer::new`]).
    pub fn new(inner: S, limiter: RateLimiter, extract: E) -> Self {
        RateLimitLayer::new(limiter, extract).layer(inner)
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The limiter.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }
}

impl<E> RateLimit<(), E> {
    /// A layer that wraps services in `RateLimit` (the same as
    /// [`RateLimitLayer::new`]).
    pub fn layer(limiter: RateLimiter, extract: E) -> RateLimitLayer<E> {
        RateLimitLayer::new(limiter, extract)
    }
}

impl<S: Clone, E> Clone for RateLimit<S, E> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            limiter: self.limiter.clone(),
            extract: Arc::clone(&self.extract),
            quota_headers: self.quota_headers,
        }
    }
}

impl<S: fmt::Debug, E> fmt::Debug for RateLimit<S, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("limiter", &self.limiter)
            .field("quota_headers", &self.quota_headers)
            .finish_non_exhaustive()
    }
}

impl<S, E, ReqB, ResB> Service<Request<ReqB>> for RateLimit<S, E>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    E: Fn(&Request<ReqB>) -> LimitRequest<'static>,
    ResB: Body,
{
    type Response = Response<RateLimitBody<ResB>>;
    type Error = S::Error;
    type Future = RateLimitResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let limit_request = (self.extract)(&req);
        let permit = match self.limiter.reserve_now(&limit_request) {
            Ok(permit) => permit,
            Err(err) => {
                let (status, headers) = rejection(&err);
                return RateLimitResponseFuture {
                    state: State::Rejected { status, headers },
                };
            }
        };
        let mut headers = HeaderMap::new();
        if self.quota_headers {
            for (name, value) in permit.headers() {
                if let Ok(value) = HeaderValue::try_from(value) {
                    headers.insert(HeaderName::from_static(name), value);
                }
            }
        }
        let recorder = UsageRecorder::new();
        req.extensions_mut().insert(recorder.clone());
        RateLimitResponseFuture {
            state: State::Called {
                future: self.inner.call(req),
                settlement: Some(Settlement {
                    permit: Some(permit),
                    recorder,
                }),
                headers,
            },
        }
    }
}

/// The status and headers a rejection is answered with.
fn rejection(err: &RateLimitError) -> (StatusCode, HeaderMap) {
    let mut headers = HeaderMap::new();
    let status = match err {
        RateLimitError::Limited(limited) => {
            for (name, value) in limited.header_values() {
                headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
            }
            StatusCode::TOO_MANY_REQUESTS
        }
        RateLimitError::ModelNotAllowed { .. } => StatusCode::FORBIDDEN,
        RateLimitError::KeyTableFull { .. } => {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from(1u64));
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    (status, headers)
}

/// A permit waiting for its response to end, with where its usage arrives.
#[derive(Debug)]
struct Settlement {
    permit: Option<Permit>,
    recorder: UsageRecorder,
}

impl Settlement {
    /// The body ended: settle with the recorded usage, or at the reservation.
    fn finish(&mut self) {
        if let Some(permit) = self.permit.take() {
            match self.recorder.usage() {
                Some(usage) => permit.settle_now(usage),
                None => permit.settle_reserved(),
            }
        }
    }

    /// The response will not end normally: settle with the recorded usage,
    /// or let the permit's drop guard apply the cancel policy.
    fn abandon(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        match self.recorder.usage() {
            Some(usage) => permit.settle_now(usage),
            // The permit's drop guard applies the cancel policy.
            None => drop(permit),
        }
    }
}

impl Drop for Settlement {
    fn drop(&mut self) {
        self.abandon();
    }
}

pin_project! {
    /// The future of a [`RateLimit`] service's response.
    pub struct RateLimitResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Rejected {
            status: StatusCode,
            headers: HeaderMap,
        },
        Called {
            #[pin]
            future: F,
            settlement: Option<Settlement>,
            headers: HeaderMap,
        },
    }
}

impl<F> fmt::Debug for RateLimitResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Rejected { status, .. } => format!("rejected {status}"),
            State::Called { .. } => "called".to_owned(),
        };
        f.debug_struct("RateLimitResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, B, E> Future for RateLimitResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<RateLimitBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Rejected { status, headers } => {
                let mut response = Response::new(RateLimitBody {
                    kind: Kind::Rejected,
                });
                *response.status_mut() = *status;
                *response.headers_mut() = mem::take(headers);
                Poll::Ready(Ok(response))
            }
            StateProj::Called {
                future,
                settlement,
                headers,
            } => {
                let response = match ready!(future.poll(cx)) {
                    Ok(response) => response,
                    Err(err) => {
                        // No response will come: the cancel path.
                        drop(settlement.take());
                        return Poll::Ready(Err(err));
                    }
                };
                let (mut parts, body) = response.into_parts();
                for (name, value) in mem::take(headers).into_iter() {
                    if let Some(name) = name {
                        parts.headers.insert(name, value);
                    }
                }
                let mut settlement = settlement.take().unwrap_or_else(|| Settlement {
                    permit: None,
                    recorder: UsageRecorder::new(),
                });
                // A body that is already over may never be polled again.
                if body.is_end_stream() {
                    settlement.finish();
                }
                Poll::Ready(Ok(Response::from_parts(
                    parts,
                    RateLimitBody {
                        kind: Kind::Inner { body, settlement },
                    },
                )))
            }
        }
    }
}

pin_project! {
    /// A [`RateLimit`] response body: empty for a rejection, otherwise the
    /// inner body, settling the request's permit when it ends or is dropped.
    pub struct RateLimitBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Rejected,
        Inner {
            #[pin]
            body: B,
            settlement: Settlement,
        },
    }
}

impl<B> fmt::Debug for RateLimitBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Rejected => "rejected",
            Kind::Inner { settlement, .. } if settlement.permit.is_some() => "unsettled",
            Kind::Inner { .. } => "settled",
        };
        f.debug_struct("RateLimitBody")
            .field("kind", &kind)
            .finish()
    }
}

impl<B: Body> Body for RateLimitBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Rejected => Poll::Ready(None),
            KindProj::Inner {
                mut body,
                settlement,
            } => {
                let frame = ready!(body.as_mut().poll_frame(cx));
                match &frame {
                    None => settlement.finish(),
                    Some(Err(_)) => settlement.abandon(),
                    Some(Ok(_)) if body.is_end_stream() => settlement.finish(),
                    Some(Ok(_)) => {}
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Rejected => true,
            Kind::Inner { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Rejected => SizeHint::with_exact(0),
            Kind::Inner { body, .. } => body.size_hint(),
        }
    }
}
