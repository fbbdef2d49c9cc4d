//! The tower `RateLimit` middleware: 429s without calling the inner service,
//! settlement when the body ends, and on early drop.
#![cfg(feature = "tower")]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use appnet_policy::{
    CancelPolicy, Clock, LimitKey, LimitRequest, LimitSpec, LimitUnit, ManualClock, ModelAllowList,
    RateLimit, RateLimiter, Usage, UsageRecorder,
};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use tower::{Layer, Service, ServiceExt, service_fn};

const MINUTE: Duration = Duration::from_secs(60);

/// Reads the limit request from test headers.
fn extract<B>(req: &Request<B>) -> LimitRequest<'static> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    LimitRequest::new(header("x-principal"), header("x-model")).with_tokens(
        header("x-input").parse().unwrap_or(0),
        header("x-max-output").parse().unwrap_or(0),
    )
}

fn request(principal: &str, model: &str, input: u64, max_output: u64) -> Request<Empty<Bytes>> {
    Request::builder()
        .header("x-principal", principal)
        .header("x-model", model)
        .header("x-input", input.to_string())
        .header("x-max-output", max_output.to_string())
        .body(Empty::new())
        .unwrap()
}

fn limiter(clock: &ManualClock, policy: CancelPolicy) -> RateLimiter {
    RateLimiter::builder()
        .clock(clock.clone())
        .cancel_policy(policy)
        .allow_list(ModelAllowList::default().allow("*", &["gpt-*"]).unwrap())
        .limit(LimitSpec::new(
            "tpm",
            LimitUnit::Tokens,
            1_000,
            MINUTE,
            LimitKey::PerPrincipal,
        ))
        .limit(LimitSpec::new(
            "rpm",
            LimitUnit::Requests,
            2,
            MINUTE,
            LimitKey::PerPrincipal,
        ))
        .build()
        .unwrap()
}

fn tokens_left(limiter: &RateLimiter, clock: &ManualClock) -> u64 {
    let r = LimitRequest::new("alice", "gpt-4o");
    limiter.quota("tpm", &r, clock.now()).unwrap().remaining
}

fn header(resp: &Response<impl Body>, name: &str) -> String {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// A three-chunk streamed body.
type Chunks = StreamBody<tokio_stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

fn chunks() -> Chunks {
    let frames = ["data: a\n\n", "data: b\n\n", "data: [DONE]\n\n"]
        .into_iter()
        .map(|s| Ok(Frame::data(Bytes::from(s))))
        .collect::<Vec<_>>();
    StreamBody::new(tokio_stream::iter(frames))
}

#[tokio::test]
async fn limited_requests_get_429_without_calling_the_inner_service() {
    let clock = ManualClock::new();
    let limiter = limiter(&clock, CancelPolicy::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let inner = service_fn(move |_req: Request<Empty<Bytes>>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok")))) }
    });
    let mut svc = RateLimit::layer(limiter.clone(), extract).layer(inner);

    for _ in 0..2 {
        let resp = svc
            .ready()
            .await
            .unwrap()
            .call(request("alice", "gpt-4o", 10, 10))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
    }
    clock.advance(Duration::from_millis(1_500));
    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(request("alice", "gpt-4o", 10, 10))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    // One request back every 30 s; 1.5 s have passed.
    assert_eq!(header(&resp, "retry-after"), "29");
    assert_eq!(header(&resp, "x-ratelimit-limit"), "2");
    assert_eq!(header(&resp, "x-ratelimit-remaining"), "0");
    assert_eq!(header(&resp, "x-ratelimit-reset"), "59");
    assert!(resp.body().is_end_stream());
    assert!(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // A model the principal may not use: 403, inner untouched.
    let resp = svc
        .ready()
        .await
        .unwrap()
        .call(request("bob", "claude", 1, 1))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let stats = limiter.stats();
    assert_eq!((stats.limits[1].rejected, stats.model_denied), (1, 1));
}

#[tokio::test]
async fn usage_is_settled_when_the_body_ends() {
    let clock = ManualClock::new();
    let limiter = limiter(&clock, CancelPolicy::default());
    let inner = service_fn(|req: Request<Empty<Bytes>>| {
        let recorder = req.extensions().get::<UsageRecorder>().cloned();
        async move {
            // The upstream reports 100 input and 50 output tokens.
            recorder.unwrap().record(Usage::new(100, 50));
            Ok::<_, Infallible>(Response::new(chunks()))
        }
    });
    let svc = RateLimit::new(inner, limiter.clone(), extract);
    let resp = svc
        .oneshot(request("alice", "gpt-4o", 100, 400))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    assert_eq!(tokens_left(&limiter, &clock), 500, "reserved 100 + 400");
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "data: a\n\n");
    assert_eq!(tokens_left(&limiter, &clock), 500, "not settled mid-stream");
    while body.frame().await.is_some() {}
    assert_eq!(tokens_left(&limiter, &clock), 850, "settled at 150 tokens");
    drop(body);
    assert_eq!(tokens_left(&limiter, &clock), 850, "settled once");
    assert_eq!(limiter.stats().cancelled, 0);
}

#[tokio::test]
async fn a_body_that_reports_no_usage_keeps_its_reservation() {
    let clock = ManualClock::new();
    let limiter = limiter(&clock, CancelPolicy::RefundTokens);
    let inner = service_fn(|_req: Request<Empty<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
    });
    let layer = RateLimit::layer(limiter.clone(), extract).with_quota_headers();
    let resp = layer
        .layer(inner)
        .oneshot(request("alice", "gpt-4o", 100, 500))
        .await
        .unwrap();
    // The tightest limit: 400 of 1000 tokens left beats 1 of 2 requests.
    assert_eq!(header(&resp, "x-ratelimit-remaining"), "400");
    assert_eq!(header(&resp, "x-ratelimit-limit"), "1000");
    assert_eq!(header(&resp, "x-ratelimit-reset"), "36");
    resp.into_body().collect().await.unwrap();
    // It completed, so the cancel policy (refund) does not apply.
    assert_eq!(tokens_left(&limiter, &clock), 400);
    assert_eq!(limiter.stats().cancelled, 0);
}

#[tokio::test]
async fn an_already_finished_body_is_settled_with_the_response() {
    let clock = ManualClock::new();
    let limiter = limiter(&clock, CancelPolicy::RefundTokens);
    let inner = service_fn(|req: Request<Empty<Bytes>>| {
        let recorder = req.extensions().get::<UsageRecorder>().cloned();
        async move {
            recorder.unwrap().record(Usage::new(10, 0));
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        }
    });
    let resp = RateLimit::new(inner, limiter.clone(), extract)
        .oneshot(request("alice", "gpt-4o", 10, 90))
        .await
        .unwrap();
    // Never polled: a server may not poll a body that says it is over.
    assert!(resp.body().is_end_stream());
    assert_eq!(tokens_left(&limiter, &clock), 990);
    drop(resp);
    assert_eq!(tokens_left(&limiter, &clock), 990);
    assert_eq!(limiter.stats().cancelled, 0);
}

#[tokio::test]
async fn dropping_the_body_early_settles_through_the_drop_guard() {
    let clock = ManualClock::new();
    let limiter = limiter(&clock, CancelPolicy::RefundTokens);
    let inner = service_fn(|_req: Request<Empty<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(chunks()))
    });
    let svc = RateLimit::new(inner, limiter.clone(), extract);
    let resp = svc
        .clone()
        .oneshot(request("alice", "gpt-4o", 100, 400))
        .await
        .unwrap();
    let mut body = resp.into_body();
    body.frame().await.unwrap().unwrap();
    assert_eq!(tokens_left(&limiter, &clock), 500);
    // The client goes away mid-stream.
    drop(body);
    assert_eq!(tokens_left(&limiter, &clock), 1_000, "refunded once");
    assert_eq!(limiter.stats().cancelled, 1);

    // With usage known when the client leaves, that usage is charged.
    let reporting = service_fn(|req: Request<Empty<Bytes>>| {
        let recorder = req.extensions().get::<UsageRecorder>().cloned();
        async move {
            recorder.unwrap().record(Usage::new(100, 20));
            Ok::<_, Infallible>(Response::new(chunks()))
        }
    });
    let resp = RateLimit::new(reporting, limiter.clone(), extract)
        .oneshot(request("alice", "gpt-4o", 100, 400))
        .await
        .unwrap();
    let mut body = resp.into_body();
    body.frame().await.unwrap().unwrap();
    drop(body);
    assert_eq!(tokens_left(&limiter, &clock), 880);
    assert_eq!(limiter.stats().cancelled, 1);

    // The response future dropped before it completes: cancelled too.
    clock.advance(MINUTE);
    let pending = service_fn(|_req: Request<Empty<Bytes>>| {
        std::future::pending::<Result<Response<Empty<Bytes>>, Infallible>>()
    });
    let mut svc = RateLimit::new(pending, limiter.clone(), extract);
    let future = svc.call(request("alice", "gpt-4o", 100, 0));
    assert_eq!(tokens_left(&limiter, &clock), 900);
    drop(future);
    assert_eq!(tokens_left(&limiter, &clock), 1_000);
    assert_eq!(limiter.stats().cancelled, 2);
}

#[tokio::test]
async fn an_inner_error_cancels_the_permit() {
    let clock = ManualClock::new();
    let limiter = limiter(&clock, CancelPolicy::RefundTokens);
    let inner = service_fn(|_req: Request<Empty<Bytes>>| async {
        Err::<Response<Empty<Bytes>>, _>("upstream down")
    });
    let err = RateLimit::new(inner, limiter.clone(), extract)
        .oneshot(request("alice", "gpt-4o", 100, 100))
        .await
        .unwrap_err();
    assert_eq!(err, "upstream down");
    assert_eq!(tokens_left(&limiter, &clock), 1_000);
    assert_eq!(limiter.stats().cancelled, 1);
}
