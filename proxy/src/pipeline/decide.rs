//! The decide layer: which of the profile's rules fire for a call.
//!
//! It reads the profile in force once (an atomic pointer load), reads the request
//! body only when a rule looks at it (or an error that fires must name the
//! model), decides each matching rule under the profile's seed, and names the
//! call and its client in the record by keyed hashes. It changes nothing: the
//! layers below carry out what it decided.

use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use brownout_faults::api::inspect_request;
use brownout_faults::decide::decide;
use brownout_faults::fault::SkipReason;
use brownout_faults::matcher::{parse_header_faults, CompiledRule, MatchInput, RuleDecision};
use brownout_faults::schedule::{fingerprint, CallId};
use brownout_faults::RequestFacts;
use bytes::{Bytes, BytesMut};
use futures_util::future::Either;
use http::HeaderMap;
use http_body::Body;
use http_body_util::BodyExt;
use tokio::time::Instant;

use crate::config::Cidr;
use crate::error::BoxError;
use crate::exchange::Exchange;
use crate::pipeline::call::{BoxFuture, Call, CallState, Decided, ResetAbort, RuleRef};
use crate::record::Outcome;
use crate::upstream::ReqBody;
use crate::wire::{FAULT_NAME as X_BROWNOUT_FAULT, SEQ_NAME as X_BROWNOUT_SEQ};

/// [`tower::Layer`] of [`Decide`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DecideLayer;

impl<S> tower::Layer<S> for DecideLayer {
    type Service = Decide<S>;

    fn layer(&self, inner: S) -> Decide<S> {
        Decide { inner }
    }
}

/// Decides the call's faults, then hands it to `inner`.
#[derive(Debug, Clone)]
pub struct Decide<S> {
    inner: S,
}

impl<S, R> tower::Service<Call> for Decide<S>
where
    S: tower::Service<Call, Response = R, Error = ResetAbort> + Clone + Send + 'static,
    S::Future: Send,
    R: Send + 'static,
{
    type Response = R;
    type Error = ResetAbort;
    type Future = Either<S::Future, BoxFuture<R>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ResetAbort>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut call: Call) -> Self::Future {
        let mut inner = crate::pipeline::call::take_ready(&mut self.inner);
        if nothing_to_decide(&mut call) {
            return Either::Left(inner.call(call));
        }
        Either::Right(Box::pin(async move {
            let call = decide_call(call).await?;
            inner.call(call).await
        }))
    }
}

/// A call no rule can touch (faults off, or no rules and no `x-brownout-fault` to
/// read): its record gets the phase and the keyed names of call and client, as
/// [`decide_call`] would give it, without an await or a future of its own. False,
/// untouched, when there may be something to decide.
fn nothing_to_decide(call: &mut Call) -> bool {
    let st = &mut call.state;
    let shared = &st.on.shared;
    let profile = shared.profile.load();
    let asks = shared.allow_header_faults && call.head.headers.contains_key(&X_BROWNOUT_FAULT);
    if shared.release.faults_enabled() && (!profile.is_empty() || asks) {
        return false;
    }
    // The phase the call came in (its record's start: no clock read of its own).
    let arrived = st.ex.start();
    st.ex.rec().phase = profile.active(arrived).phase.map(|p| p.name.clone());
    st.ip = st.conn.peer.ip();
    st.facts = head_facts(st);
    name_call(st, &call.head, None);
    true
}

/// What the head alone says: the facts of a call whose body is not read.
fn head_facts(st: &CallState) -> RequestFacts {
    RequestFacts {
        api: st.on.api,
        endpoint: st.endpoint,
        grpc: st.grpc,
        ..Default::default()
    }
}

/// The record names the call and its client by keyed hashes (docs/records.md),
/// from the head and `read`, the body as far as it was read for matching.
fn name_call(st: &mut CallState, parts: &http::request::Parts, read: Option<&[u8]>) {
    let target = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    let who = crate::record::credential(&parts.headers);
    st.on
        .shared
        .recorder
        .identify(st.ex.rec(), parts.method.as_str(), target, read, who, st.ip);
}

async fn decide_call(mut call: Call) -> Result<Call, ResetAbort> {
    let on = call.state.on.clone();
    let shared = &on.shared;
    let profile = shared.profile.load_full();
    let active = profile.active(Instant::now());
    let st = &mut call.state;
    st.ex.rec().phase = active.phase.map(|p| p.name.clone());
    // Faults a client asked for on this request (only with allow_header_faults).
    let header_rule = if shared.allow_header_faults {
        header_faults(&call.head.headers).map(Arc::new)
    } else {
        None
    };
    st.ip = st.conn.peer.ip();
    st.facts = head_facts(st);
    let parts = &call.head;
    if shared.release.faults_enabled() && (!profile.is_empty() || header_rule.is_some()) {
        // A gRPC body is protobuf, and a streaming call's may never end: neither
        // is read for JSON facts.
        if profile.needs_body && !parts.method.is_safe() && !st.grpc {
            if let Some(f) = inspect_body(shared.inspect_limit, parts, &mut call.body, st).await? {
                st.facts = f;
            }
        }
        st.ip = client_ip(st.conn.peer.ip(), &parts.headers, &shared.trusted_proxies);
        let seq: Option<u64> = parts
            .headers
            .get(&X_BROWNOUT_SEQ)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        // Which call this attempt belongs to, for `x-brownout-seq` ordinals and
        // `schedule: {per: call}`.
        let retry = st.ex.rec().attempt;
        let id = CallId {
            seq,
            retry,
            fingerprint: (profile.counts_calls && seq.is_none() && retry.is_none())
                .then(|| call_fingerprint(parts, call.body.as_ref(), st.ip)),
        };
        let input = MatchInput {
            listener: &on.name,
            method: &parts.method,
            path: parts.uri.path(),
            headers: &parts.headers,
            facts: &st.facts,
            client_ip: Some(st.ip),
        };
        for (i, rule) in active.rules.enumerate() {
            let rng = match rule.decide(&input, profile.seed, active.at, &id) {
                RuleDecision::NoMatch => continue,
                RuleDecision::Skip => {
                    st.ex.rec().matched.push(rule.name.clone());
                    continue;
                }
                RuleDecision::Busy => {
                    st.ex.rec().matched.push(rule.name.clone());
                    for f in &rule.faults {
                        st.ex
                            .skipped(&rule.name, f.kind(), SkipReason::MaxActive.as_str());
                    }
                    continue;
                }
                RuleDecision::Fire(rng) => rng,
            };
            st.ex.rec().matched.push(rule.name.clone());
            st.ex.hold_rule(rule.state.clone());
            st.ex.rec().rules.push(rule.name.clone());
            st.decided.push(Decided {
                rule: RuleRef::of(&profile, active.phase_index, i),
                rng,
            });
        }
        if let Some(rule) = header_rule {
            let ordinal = id.ordinal().unwrap_or_else(|| st.ex.rec().id);
            if let Some(rng) = decide(profile.seed, rule.id, ordinal, 1.0) {
                st.ex.rec().rules.push(rule.name.clone());
                st.decided.push(Decided {
                    rule: RuleRef::Adhoc(rule),
                    rng,
                });
            }
        }
        // An error that names the request's model ("Rate limit reached for
        // gpt-4.1-mini ...") needs the body even when no rule matches on it: read it
        // now, for the rules that fired (their decisions did not depend on it).
        if !profile.needs_body
            && !st.grpc
            && !parts.method.is_safe()
            && st.endpoint.is_generative()
            && st.decided.iter().any(|d| d.rule.names_model())
        {
            if let Some(f) = inspect_body(shared.inspect_limit, parts, &mut call.body, st).await? {
                st.facts = f;
            }
        }
    }
    // The record names the call and its client by keyed hashes (docs/records.md).
    // Only a body read for matching counts: one read for an error's model text is
    // read on faulted attempts alone, and the attempt that gets through must hash
    // as they did for a report to count it as their retry.
    let read = match call.body.as_ref() {
        Some(ReqBody::Prefixed {
            prefix: Some(p), ..
        }) if profile.needs_body => Some(&p[..]),
        _ => None,
    };
    name_call(st, parts, read);
    Ok(call)
}

/// Read up to `limit` bytes of a body. Returns what was read and, if the body was
/// longer, the unread rest (then the body counts as not inspected).
pub(crate) async fn read_prefix<B>(
    mut body: B,
    limit: usize,
) -> Result<(Bytes, Option<B>), BoxError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut buf = BytesMut::new();
    loop {
        if body.is_end_stream() {
            return Ok((buf.freeze(), None));
        }
        match body.frame().await {
            None => return Ok((buf.freeze(), None)),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                    if buf.len() > limit {
                        return Ok((buf.freeze(), Some(body)));
                    }
                }
            }
        }
    }
}

/// Read the request body (up to `limit`) for its facts (model, stream, prompt
/// estimate) and note them in the record. What was read travels on in front of
/// the rest (`ReqBody::Prefixed`), so the upstream gets the body unchanged; a body
/// over the limit is not inspected (`None`) and streams on as it came. When the
/// client's body breaks while it is read, the exchange is finished here.
async fn inspect_body(
    limit: usize,
    parts: &http::request::Parts,
    req_body: &mut Option<ReqBody>,
    st: &mut crate::pipeline::call::CallState,
) -> Result<Option<RequestFacts>, ResetAbort> {
    let ex: &mut Exchange = &mut st.ex;
    let mut facts = None;
    match req_body.take() {
        Some(b @ (ReqBody::Incoming(_) | ReqBody::Buffered(_) | ReqBody::Boxed(_))) => {
            if b.size_hint().lower() > limit as u64 {
                *req_body = Some(b);
            } else {
                match read_prefix(b, limit).await {
                    Ok((prefix, rest)) => {
                        if rest.is_none() {
                            facts = Some(inspect_request(
                                st.on.api,
                                &parts.method,
                                parts.uri.path(),
                                Some(&prefix),
                            ));
                        }
                        ex.rec().bytes_in = prefix.len() as u64;
                        *req_body = Some(ReqBody::Prefixed {
                            prefix: Some(prefix),
                            rest: rest.map(Box::new),
                        });
                    }
                    Err(e) => {
                        // The client's body broke while we read it: nothing to forward.
                        ex.finish(Outcome::ClientClosed, Some(format!("request body: {e}")));
                        return Err(ResetAbort::PLAIN);
                    }
                }
            }
        }
        other => *req_body = other,
    }
    if let Some(f) = &facts {
        ex.rec().model = f.model.clone();
        ex.rec().stream = f.stream;
        ex.rec().input_tokens = f.prompt_tokens;
        if f.prompt_tokens.is_some() {
            ex.rec().tokens_source = Some("estimated");
        }
    }
    Ok(facts)
}

/// The request's fingerprint for telling calls apart (`schedule: {per: call}`):
/// method, path and query, the body as far as it was read for matching, and the
/// client, by the drill's `x-brownout-client` (simulated users sharing one real
/// key), else its API key or authorization header, else its address.
fn call_fingerprint(
    parts: &http::request::Parts,
    body: Option<&ReqBody>,
    ip: std::net::IpAddr,
) -> u64 {
    let body = match body {
        Some(ReqBody::Prefixed {
            prefix: Some(p), ..
        }) => Some(&p[..]),
        _ => None,
    };
    let ip = ip.to_string();
    let client = crate::record::credential(&parts.headers).unwrap_or(ip.as_bytes());
    let target = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    fingerprint(parts.method.as_str(), target, body, Some(client))
}

/// The ad-hoc rule for an `x-brownout-fault` request header.
fn header_faults(headers: &http::HeaderMap) -> Option<CompiledRule> {
    let v = headers.get(&X_BROWNOUT_FAULT)?.to_str().ok()?;
    let (faults, bad) = parse_header_faults(v);
    if !bad.is_empty() {
        tracing::warn!(items = ?bad, "ignoring x-brownout-fault items that are not understood");
    }
    (!faults.is_empty()).then(|| CompiledRule::adhoc("header", faults))
}

/// The client's address: the peer, or the nearest untrusted hop of
/// `X-Forwarded-For` when the peer is a trusted proxy.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    if trusted.is_empty() || !trusted.iter().any(|c| c.contains(peer)) {
        return peer;
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        let Ok(v) = v.to_str() else { return peer };
        for part in v.split(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => hops.push(ip),
                Err(_) => return peer,
            }
        }
    }
    // Walk from the nearest hop back; the first untrusted one is the client.
    for ip in hops.iter().rev() {
        if !trusted.iter().any(|c| c.contains(*ip)) {
            return *ip;
        }
    }
    hops.first().copied().unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xff_believed_only_from_trusted() {
        let trusted: Vec<Cidr> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 10.0.0.5".parse().unwrap());
        assert_eq!(
            client_ip("10.0.0.1".parse().unwrap(), &h, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip("198.51.100.1".parse().unwrap(), &h, &trusted),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip("10.0.0.1".parse().unwrap(), &h, &[]),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }
}
