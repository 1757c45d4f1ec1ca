//! The upstream service: the innermost service of the full path's stack.
//!
//! It turns a call into the upstream's request (its URI, `Host` or
//! `:authority`, hop-by-hop headers and brownout's own taken off), sends it over
//! the listener's HTTP/1.1 pool or the client connection's own HTTP/2 upstream
//! connection, and gives back the answer's head and body unread. A failure to get
//! an answer is brownout's gateway error, made here ([`gateway_error`]).

use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, StatusCode, Version};

use crate::config::UpstreamProtocol;
use crate::error::ProxyError;
use crate::pipeline::call::{gateway_error, BoxFuture, Call, Reply, ResetAbort};
use crate::record::Outcome;
use crate::upstream::{ReqBody, UpBody, CLIENT_BODY_FAILED};
use crate::wire::{strip_hop_by_hop, FAULT_NAME as X_BROWNOUT_FAULT, SEQ_NAME as X_BROWNOUT_SEQ};

/// Where an upstream says how long it keeps an idle connection: a name made once,
/// not parsed from a string for every answer to an upgrade request.
static KEEP_ALIVE: http::HeaderName = http::HeaderName::from_static("keep-alive");

/// Sends calls to their listener's upstream ([`crate::pipeline::call::CallState::upstream`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Forward;

impl tower::Service<Call> for Forward {
    type Response = Reply;
    type Error = ResetAbort;
    type Future = BoxFuture<Reply>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ResetAbort>> {
        // Pools wait for a connection inside the call, under the upstream timeout.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> Self::Future {
        Box::pin(forward(call))
    }
}

async fn forward(call: Call) -> Result<Reply, ResetAbort> {
    let Call {
        head: mut parts,
        body: req_body,
        state: mut st,
    } = call;
    let Some(ctx) = st.upstream.take() else {
        // Only a stack built around an application's service has no upstream, and
        // that one ends in the application, not here.
        let e = ProxyError::unreachable("the listener", "no upstream to forward to");
        return Ok(Reply::Done(gateway_error(st.ex, e)));
    };
    let shared = &ctx.listener.shared;
    let grpc = st.grpc;
    // Forward upstream: over this connection's own HTTP/2 upstream connection
    // for gRPC (and for everything under `upstream_protocol: h2c | h2`), else
    // through the listener's HTTP/1.1 pool.
    let h2 = match (ctx.protocol, ctx.h2.as_ref()) {
        (UpstreamProtocol::H2c | UpstreamProtocol::H2, Some(d)) => Some(d),
        (UpstreamProtocol::Auto, Some(d)) if grpc => Some(d),
        _ => None,
    };
    if grpc && h2.is_none() {
        let e = ProxyError::unreachable(
            &ctx.upstream.display,
            "gRPC needs HTTP/2 upstream, and this listener's upstream_protocol is http1",
        );
        return Ok(Reply::Done(gateway_error(st.ex, e)));
    }
    let uri = match h2 {
        Some(_) => ctx.upstream.uri_for(&parts.uri, true),
        None => ctx.client.uri_for(&ctx.upstream, &parts.uri),
    };
    parts.uri = match uri {
        Ok(u) => u,
        Err(e) => {
            return Ok(Reply::Done(gateway_error(
                st.ex,
                ProxyError::BadRequest(e.to_string()),
            )))
        }
    };
    // A WebSocket upgrade keeps its upgrade headers and becomes a tunnel (tunnel.rs).
    let upgrade = match h2 {
        Some(_) => None,
        None => crate::pipeline::tunnel::take(&mut parts),
    };
    strip_hop_by_hop(&mut parts.headers);
    if let Some(up) = &upgrade {
        up.restore(&mut parts.headers);
    }
    if h2.is_some() {
        // HTTP/2 names the upstream in `:authority`, taken from the URI.
        parts.version = Version::HTTP_2;
        parts.headers.remove(http::header::HOST);
    } else {
        parts.version = Version::HTTP_11;
        parts
            .headers
            .insert(http::header::HOST, ctx.upstream.host.clone());
    }
    parts.headers.remove(&X_BROWNOUT_SEQ);
    if !st.body_faults.plan.is_empty() {
        // A body that must be rewritten is asked for without compression.
        parts.headers.insert(
            http::header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    if shared.allow_header_faults {
        parts.headers.remove(&X_BROWNOUT_FAULT);
    }
    let body = req_body.unwrap_or(ReqBody::Empty);
    let (body, seen) = body.counted();
    st.ex.bytes_in = seen.clone();
    let up_req = Request::from_parts(parts, body);
    let deadline = st.ex.upstream_called() + shared.upstream_timeout;
    let attempt = if let Some(dialer) = h2 {
        // Boxed: HTTP/2's send is several times the size of all the rest of this
        // future, which every HTTP/1.1 call would otherwise allocate and copy.
        let send = Box::pin(st.conn.h2.send(dialer, up_req, shared.inspect_limit));
        tokio::time::timeout_at(deadline, send).await
    } else if upgrade.is_some() {
        // On a connection of its own: a tunnel never goes back to a pool.
        let send = async { ctx.client.upgrade(up_req).await.map(|r| (r, false)) };
        tokio::time::timeout_at(deadline, send).await
    } else {
        tokio::time::timeout_at(deadline, ctx.client.request(up_req, shared.inspect_limit)).await
    };
    let resp = match attempt {
        Err(_) => {
            let e = ProxyError::timeout(&ctx.upstream.display, shared.upstream_timeout);
            return Ok(Reply::Done(gateway_error(st.ex, e)));
        }
        Ok(Err(e)) => {
            let client_failed = seen
                .as_ref()
                .is_some_and(|n| n.load(Ordering::Relaxed) & CLIENT_BODY_FAILED != 0);
            if client_failed {
                // The client broke its own upload (hung up, reset the stream): not
                // the upstream's failure, and nobody is left to answer.
                st.ex.finish(
                    Outcome::ClientClosed,
                    Some(format!("request body: {}", crate::error::chain(&e))),
                );
                return Err(ResetAbort::PLAIN);
            }
            let e = ProxyError::unreachable(&ctx.upstream.display, e);
            return Ok(Reply::Done(gateway_error(st.ex, e)));
        }
        Ok(Ok((r, resent))) => {
            if resent {
                st.ex.upstream_retried();
            }
            r
        }
    };
    let (mut rparts, rbody) = resp.into_parts();
    // A proxy answers in its own HTTP version (RFC 9110 6.2): an HTTP/1.0 upstream's
    // answer goes out as HTTP/1.1 to the HTTP/1.1 client, as on the fast path.
    if rparts.version == Version::HTTP_10 || (rparts.version == Version::HTTP_2 && !st.http2) {
        rparts.version = Version::HTTP_11;
    }
    st.ex.upstream_headers(rparts.status.as_u16());
    if grpc {
        // A trailers-only answer carries the call's status in its headers.
        if let Some(code) = crate::body::grpc::status_of(&rparts.headers) {
            st.ex.grpc_status(code);
        }
    }
    let upgraded = upgrade.is_some();
    if let Some(up) = upgrade {
        if rparts.status == StatusCode::SWITCHING_PROTOCOLS {
            return Ok(Reply::Done(crate::pipeline::tunnel::switch(
                shared,
                &st.conn,
                up,
                st.ex,
                rparts,
                st.body_faults,
                st.mark,
            )));
        }
        // Any other answer to an upgrade request is an ordinary answer.
    }
    if upgraded {
        // An answer over the pool's own leg told the pool as it was parsed
        // (`upstream::h1`); one to an upgrade request came over hyper's.
        if let Some(v) = rparts.headers.get(&KEEP_ALIVE) {
            ctx.client.announced_keep_alive(v.as_bytes());
        }
    }
    if !matches!(rbody, UpBody::Raw(_)) {
        // The pool's own leg typed its answer without them (`upstream::h1`).
        strip_hop_by_hop(&mut rparts.headers);
    }
    if let Some(m) = st.mark.take() {
        rparts.headers.insert(&X_BROWNOUT_FAULT, m);
    }
    Ok(Reply::Upstream {
        state: st,
        head: rparts,
        body: rbody,
    })
}

#[cfg(test)]
mod tests {
    /// The size of the future `f` returns, without calling it.
    fn future_size<F, Fut>(_: F) -> usize
    where
        F: FnOnce(super::Call) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// Every call allocates and fills the upstream leg's future: one branch's
    /// large state (HTTP/2's send was 8 KiB of its 10) left inline costs every
    /// call that copy.
    #[test]
    fn the_upstream_legs_future_stays_small() {
        let size = future_size(super::forward);
        assert!(size <= 4096, "forward's future is {size} bytes");
    }
}
