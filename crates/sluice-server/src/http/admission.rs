//! Admission control at the HTTP edge: the part of the route guard (after authorization) that admits a
//! request through [`Admission::admit`] (see `crate::admission` for the budgets), charges the
//! body bytes as they are actually read, holds the request's slots until its response body
//! ends (a streamed export is still work in flight), and sets the `X-RateLimit-*` headers.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::admission::{Admitted, ByteCharger};
use crate::auth::Actor;
use crate::state::AppState;

/// What a request admitted by [`enter`] holds until its response body ends: its admission
/// slots and the rate-limit figures for its headers.
pub struct Entered {
    admitted: Admitted,
    rate: Option<(u64, u64, u64)>,
}

/// A refusal: the response to answer, and the request (whose body the guard reads and
/// discards before answering).
pub type Refused = Box<(Response, Request)>;

/// Admits `req` (the part of the route guard after authorization,
/// `crate::http::middleware::Guard`): public routes and a disabled admission pass with `None`;
/// an admitted request gets a body that charges the bytes actually read; a refusal is the
/// response to answer. Pass the [`Entered`] to [`leave`] with the response.
pub fn enter(state: &AppState, req: Request) -> Result<(Request, Option<Entered>), Refused> {
    let admission = state.admission();
    if !admission.enabled() {
        return Ok((req, None));
    }
    let Some(actor) = req.extensions().get::<Arc<Actor>>() else {
        return Ok((req, None)); // public route
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let admitted = match admission.admit(state, &actor.name, declared) {
        Ok(a) => a,
        Err(r) => {
            state.metrics().admission_rejected(r.code);
            let rate = r.rate;
            let mut resp = r.into_api_error().into_response();
            if let Some((limit, remaining, reset)) = rate {
                set_rate_headers(&mut resp, limit, remaining, reset);
            }
            return Err(Box::new((resp, req)));
        }
    };
    // A replication snapshot streams a whole database through a bounded line buffer: as large
    // as the data, never held in memory; it is not charged to the byte budget.
    let streamed = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .is_some_and(|p| p.as_str() == "/api/v1/replication/snapshot");
    let req = if streamed {
        req
    } else {
        req.map(|body| {
            Body::new(Counted {
                inner: body,
                charger: admitted.charger(),
                reserved: declared,
                read: 0,
            })
        })
    };
    let rate = admitted.rate();
    Ok((req, Some(Entered { admitted, rate })))
}

/// The response of a request [`enter`] admitted: its slots are held until the body ends (a
/// streamed `/ts/export` is still work in flight), and the rate-limit headers are set.
pub fn leave(resp: Response, entered: Option<Entered>) -> Response {
    let Some(Entered { admitted, rate }) = entered else {
        return resp;
    };
    let mut resp = resp.map(|body| {
        Body::new(Holding {
            inner: body,
            _admitted: admitted,
        })
    });
    if let Some((limit, remaining, reset)) = rate {
        set_rate_headers(&mut resp, limit, remaining, reset);
    }
    resp
}

fn set_rate_headers(resp: &mut Response, limit: u64, remaining: u64, reset: u64) {
    let h = resp.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    h.insert("x-ratelimit-reset", HeaderValue::from(reset));
}

/// A request body that charges the bytes actually read beyond the declared reservation.
struct Counted {
    inner: Body,
    charger: ByteCharger,
    reserved: usize,
    read: usize,
}

impl HttpBody for Counted {
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let before = this.read;
                    this.read = this.read.saturating_add(data.len());
                    let over = this.read.saturating_sub(this.reserved.max(before));
                    if over > 0
                        && let Err(e) = this.charger.charge(over)
                    {
                        return Poll::Ready(Some(Err(Box::new(e))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            other => other.map(|o| o.map(|r| r.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps the request's admission slot until it is done (or dropped).
struct Holding {
    inner: Body,
    _admitted: Admitted,
}

impl HttpBody for Holding {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
