//! Serving in-process rewards over the HTTP plugin protocol
//! (`docs/reward-protocol.md`), so that a reward model can run in another
//! process or on another machine, as ImageReward or HPS servers do:
//! `cogrpo reward serve` runs this with the project's learned reward models,
//! and a Rust user can serve any [`Reward`] of their own.
//!
//! One `POST` per batch; the request's `reward` picks the reward by name.
//! A request that cannot be scored gets an error reply (4xx for a bad
//! request, 500 when the reward fails), never a dropped connection.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::item::{BatchScores, RewardItem};
use crate::protocol::PROTOCOL;
use crate::reward::Reward;

/// The rewards a server answers for, by name.
pub type Served = Arc<BTreeMap<String, Box<dyn Reward>>>;

/// A request as a server reads it.
#[derive(Deserialize)]
struct BatchRequest {
    protocol: String,
    reward: String,
    batch_id: u64,
    items: Vec<RewardItem>,
}

/// Accepts connections on `listener` until it fails, answering each `POST`
/// with the named reward's scores. Bodies over `max_body_bytes` are refused.
pub async fn serve(
    listener: TcpListener,
    rewards: Served,
    max_body_bytes: usize,
) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let rewards = rewards.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| answer(req, rewards.clone(), max_body_bytes));
            // A client that hangs up mid-request ends only its connection.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    rewards: Served,
    max_body_bytes: usize,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match score(req, &rewards, max_body_bytes).await {
        Ok(body) => reply(StatusCode::OK, body),
        Err((status, batch_id, message)) => reply(
            status,
            json!({"protocol": PROTOCOL, "batch_id": batch_id, "error": message}).to_string(),
        ),
    })
}

type Refusal = (StatusCode, Option<u64>, String);

async fn score(
    req: Request<Incoming>,
    rewards: &Served,
    max_body_bytes: usize,
) -> Result<String, Refusal> {
    if req.method() != Method::POST {
        return Err((
            StatusCode::METHOD_NOT_ALLOWED,
            None,
            "POST a batch (cogrpo-reward/1)".into(),
        ));
    }
    let body = Limited::new(req.into_body(), max_body_bytes)
        .collect()
        .await
        .map_err(|e| {
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                format!("cannot read the body: {e}"),
            )
        })?
        .to_bytes();
    let request: BatchRequest = serde_json::from_slice(&body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            None,
            format!("not a cogrpo-reward/1 request: {e}"),
        )
    })?;
    let id = Some(request.batch_id);
    if request.protocol != PROTOCOL {
        let message = format!(
            "protocol {:?}; this server speaks {PROTOCOL}",
            request.protocol
        );
        return Err((StatusCode::BAD_REQUEST, id, message));
    }
    let reward = rewards.get(&request.reward).ok_or_else(|| {
        let names: Vec<&str> = rewards.keys().map(String::as_str).collect();
        let message = format!(
            "no reward {:?} here; this server has {}",
            request.reward,
            names.join(", ")
        );
        (StatusCode::NOT_FOUND, id, message)
    })?;
    let scores = reward
        .score(&request.items)
        .await
        .map_err(|f| (StatusCode::INTERNAL_SERVER_ERROR, id, f.to_string()))?;
    Ok(reply_body(request.batch_id, &scores))
}

/// The reply, with non-finite scores written as `NaN` (the protocol's
/// per-item failure; JSON's `null` would mean "does not apply").
fn reply_body(batch_id: u64, scores: &BatchScores) -> String {
    let column = |values: &[Option<f32>]| -> String {
        let cells: Vec<String> = values
            .iter()
            .map(|v| match v {
                None => "null".into(),
                Some(x) if x.is_finite() => Value::from(*x as f64).to_string(),
                Some(_) => "NaN".into(),
            })
            .collect();
        format!("[{}]", cells.join(","))
    };
    let parts: Vec<String> = scores
        .parts
        .iter()
        .map(|(name, values)| format!("{}:{}", Value::from(name.as_str()), column(values)))
        .collect();
    format!(
        "{{\"protocol\":\"{PROTOCOL}\",\"batch_id\":{batch_id},\"scores\":{},\"parts\":{{{}}}}}",
        column(&scores.scores),
        parts.join(",")
    )
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::parse_reply;

    #[test]
    fn replies_parse_back_with_nulls_and_non_finite_scores_kept_apart() {
        let mut scores = BatchScores::new(vec![Some(0.25), None, Some(f32::NAN)]);
        scores
            .parts
            .insert("len".into(), vec![Some(3.0), Some(1.0), None]);
        let back = parse_reply(reply_body(9, &scores).as_bytes(), 9, 3).unwrap();
        assert_eq!(back.scores[0], Some(0.25));
        assert_eq!(back.scores[1], None);
        assert!(back.scores[2].is_some_and(f32::is_nan));
        assert_eq!(back.parts["len"], vec![Some(3.0), Some(1.0), None]);
    }
}
