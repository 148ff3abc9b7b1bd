//! Injected faults: 429 with Retry-After, transient 503/504, latency, token bucket; seeded and deterministic.

use std::time::Instant;

use latchkey_entra_sim::{Faults, SimConfig, Throttle};
use reqwest::StatusCode;

use crate::helpers::{T, err_code};

#[tokio::test]
async fn throttle_every_nth_request_with_retry_after() {
    let t = T::with(SimConfig::small(1).with_faults(Faults {
        throttle: Throttle::EveryN { n: 3 },
        retry_after_secs: 2.5,
        ..Faults::default()
    }))
    .await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let (s, v, h) = t
            .send(
                t.http
                    .get(t.url("/v1.0/organization"))
                    .bearer_auth(&t.token),
            )
            .await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(h["retry-after"], "2.5");
            assert_eq!(err_code(&v), "TooManyRequests");
            assert_eq!(v["error"]["innerError"]["status"], "429");
        }
        statuses.push(s.as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 429, 200, 200, 429]);
}

#[tokio::test]
async fn transient_failures_are_seeded_and_deterministic() {
    async fn run(seed: u64) -> Vec<u16> {
        let t = T::with(SimConfig::small(seed).with_faults(Faults {
            transient_rate: 0.3,
            ..Faults::default()
        }))
        .await;
        let mut out = Vec::new();
        for _ in 0..30 {
            let (s, _) = t.get("/v1.0/organization").await;
            out.push(s.as_u16());
        }
        out
    }
    let a = run(4).await;
    let b = run(4).await;
    assert_eq!(a, b);
    assert!(a.iter().any(|s| *s == 503 || *s == 504));
    assert!(a.contains(&200));
}

#[tokio::test]
async fn latency_and_token_bucket() {
    let t = T::new().await;
    t.sim.update_faults(|f| f.latency_ms = 150);
    let start = Instant::now();
    let (s, _) = t.get("/v1.0/organization").await;
    assert_eq!(s, StatusCode::OK);
    assert!(start.elapsed().as_millis() >= 150);
    t.sim.update_faults(|f| {
        f.latency_ms = 0;
        f.throttle = Throttle::TokenBucket { scale: 0.002 };
    });
    let mut throttled = None;
    for _ in 0..20 {
        let (s, v, h) = t
            .send(t.http.get(t.url("/v1.0/users")).bearer_auth(&t.token))
            .await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            throttled = Some((v, h));
            break;
        }
    }
    let (v, h) = throttled.expect("bucket should run dry");
    assert_eq!(err_code(&v), "TooManyRequests");
    let ra: f64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(ra > 0.0 && ra < 10.0);
}
