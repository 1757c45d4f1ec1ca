//! Milvus over gRPC (`milvus.proto.milvus.MilvusService`, the API pymilvus speaks):
//! the in-message `common.Status` every answer carries, the failed answers a real
//! Milvus sends when it sheds load, and search results edited on the wire
//! ([`search`]).
//!
//! Milvus reports most failures inside a normal answer: the RPC ends with
//! grpc-status 0 and the message's `status` says what went wrong. Its proxy's
//! `RateLimitInterceptor` answers a throttled call with `GetFailedResponse(req,
//! err)`, the request's own response type holding only `status: merr.Status(err)`,
//! and a full task queue is answered the same way from the handler. So a profile's
//! `milvus.rate_limit` on gRPC is such a message, and an upstream's own failure
//! must be read out of the message to be recorded as `http_error`.
//!
//! Numbers and texts come from Milvus's own sources (`pkg/util/merr/errors.go`,
//! `pkg/util/merr/utils.go`, `internal/proxy/rate_limit_interceptor.go`,
//! `internal/proxy/util.go`, `internal/util/ratelimitutil/rate_limiter_tree.go`,
//! `internal/proxy/task_scheduler.go`) and milvus-proto's `common.proto`.

pub mod search;

use bytes::Bytes;

use super::frame;
use super::wire::{self, Field, WireType};

pub use search::{count_search_results, edit_search_frame, edit_search_results, SearchEdit, Skip};

/// The service every Milvus method path starts with.
pub const SERVICE: &str = "milvus.proto.milvus.MilvusService";

/// `common.ErrorCode.Success`.
pub const ERROR_CODE_SUCCESS: i32 = 0;
/// `common.ErrorCode.UnexpectedError`: the legacy code of every error without a
/// dedicated one (a full queue among them).
pub const ERROR_CODE_UNEXPECTED: i32 = 1;
/// `common.ErrorCode.RateLimit`: the legacy code of a rate-limited call; pymilvus
/// retries on it (or on code 8).
pub const ERROR_CODE_RATE_LIMIT: i32 = 49;
/// merr `ErrServiceTooManyRequests` ("too many concurrent requests, queue is full").
pub const CODE_TOO_MANY_REQUESTS: i32 = 4;
/// merr `ErrServiceRateLimit` ("rate limit exceeded"); pymilvus's
/// `ErrorCode.RATE_LIMIT`.
pub const CODE_RATE_LIMIT: i32 = 8;

/// The rate a throttled Milvus names by default in its reason (`[rate=…]`): the
/// limit of the bucket that refused the call, per second.
pub const DEFAULT_RATE: f64 = 100.0;
/// Proxy task queue length by default (`proxy.maxTaskNum`), named in a full
/// queue's reason (`[limit=…]`).
pub const DEFAULT_QUEUE_LIMIT: u32 = 1024;

/// `common.Status`, as every Milvus answer carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// The deprecated `common.ErrorCode` (field 1), still set for old SDKs.
    pub error_code: i32,
    /// Human-readable reason (field 2).
    pub reason: String,
    /// The merr code (field 3); 0 on success.
    pub code: i32,
    /// Whether retrying may succeed (field 4).
    pub retriable: bool,
    /// The full error chain (field 5).
    pub detail: String,
    /// `extra_info` entries (field 6) in wire order.
    pub extra_info: Vec<(String, String)>,
}

impl Status {
    /// A success status.
    pub fn success() -> Status {
        Status::default()
    }

    /// Whether this is a success, by the rule of Milvus's `merr.Ok` and pymilvus's
    /// `check_status`: both the legacy `error_code` and `code` are 0.
    pub fn is_success(&self) -> bool {
        self.error_code == ERROR_CODE_SUCCESS && self.code == 0
    }

    /// What a Milvus proxy's RateLimitInterceptor puts in `status` when a call is
    /// over its rate (`rate`: the refusing bucket's limit per second):
    /// `merr.Status(WrapErrServiceRateLimit(rate, "request is rejected by grpc
    /// RateLimiter middleware, please retry later"))`.
    ///
    /// Milvus 3 (milvus-proto v3) marks it retriable; 2.x servers send
    /// `retriable: false` for this wrapped error. pymilvus decides on the codes
    /// alone, so both behave the same to it.
    pub fn rate_limited(rate: f64) -> Status {
        let reason = format!(
            "request is rejected by grpc RateLimiter middleware, please retry later: rate limit exceeded[rate={}]",
            go_float(rate)
        );
        Status {
            error_code: ERROR_CODE_RATE_LIMIT,
            detail: reason.clone(),
            reason,
            code: CODE_RATE_LIMIT,
            retriable: true,
            extra_info: Vec::new(),
        }
    }

    /// What a Milvus proxy answers when its task queue is full (`limit`:
    /// `proxy.maxTaskNum`): `merr.Status(WrapErrTooManyRequests(limit))`, legacy
    /// code UnexpectedError, retriable.
    pub fn queue_full(limit: u32) -> Status {
        let reason = format!("too many concurrent requests, queue is full[limit={limit}]");
        Status {
            error_code: ERROR_CODE_UNEXPECTED,
            detail: reason.clone(),
            reason,
            code: CODE_TOO_MANY_REQUESTS,
            retriable: true,
            extra_info: Vec::new(),
        }
    }

    /// The status serialized as Go's protobuf encoder writes it (fields in number
    /// order, defaults omitted).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.error_code != 0 {
            wire::put_varint_field(&mut out, 1, self.error_code as i64 as u64);
        }
        if !self.reason.is_empty() {
            wire::put_len_field(&mut out, 2, self.reason.as_bytes());
        }
        if self.code != 0 {
            wire::put_varint_field(&mut out, 3, self.code as i64 as u64);
        }
        if self.retriable {
            wire::put_varint_field(&mut out, 4, 1);
        }
        if !self.detail.is_empty() {
            wire::put_len_field(&mut out, 5, self.detail.as_bytes());
        }
        for (k, v) in &self.extra_info {
            let mut entry = Vec::new();
            wire::put_len_field(&mut entry, 1, k.as_bytes());
            wire::put_len_field(&mut entry, 2, v.as_bytes());
            wire::put_len_field(&mut out, 6, &entry);
        }
        out
    }
}

/// The status a brownout preset stands for on Milvus gRPC: `milvus.rate_limit`
/// and `milvus.queue_full`, with Milvus's default rate and queue length.
pub fn preset_status(preset: &str) -> Option<Status> {
    match preset {
        "milvus.rate_limit" => Some(Status::rate_limited(DEFAULT_RATE)),
        "milvus.queue_full" => Some(Status::queue_full(DEFAULT_QUEUE_LIMIT)),
        _ => None,
    }
}

/// Where a method's response keeps its `common.Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusPlace {
    /// The response *is* a `common.Status` (CreateCollection, DropCollection, …).
    Whole,
    /// The response holds it in this field (1 for every wrapper but two).
    Field(u32),
    /// The response has no status (Dummy, GetReplicateInfo, the streaming
    /// replication methods), or the path is not a MilvusService method.
    None,
}

/// Methods whose response is a bare `common.Status` (milvus-proto `milvus.proto`).
const STATUS_METHODS: &[&str] = &[
    "AddCollectionField",
    "AddCollectionFunction",
    "AddCollectionStructField",
    "AddFileResource",
    "AddUserTags",
    "AlterAlias",
    "AlterCollection",
    "AlterCollectionField",
    "AlterCollectionFunction",
    "AlterDatabase",
    "AlterIndex",
    "AlterRole",
    "BatchUpdateManifest",
    "CreateAlias",
    "CreateCollection",
    "CreateCredential",
    "CreateDatabase",
    "CreateIndex",
    "CreatePartition",
    "CreatePrivilegeGroup",
    "CreateResourceGroup",
    "CreateRole",
    "CreateRowPolicy",
    "CreateSnapshot",
    "DeleteCredential",
    "DeleteRLSPrincipalTags",
    "DeleteUserTags",
    "DropAlias",
    "DropCollection",
    "DropCollectionFunction",
    "DropDatabase",
    "DropIndex",
    "DropPartition",
    "DropPrivilegeGroup",
    "DropResourceGroup",
    "DropRole",
    "DropRowPolicy",
    "DropSnapshot",
    "LoadBalance",
    "LoadCollection",
    "LoadPartitions",
    "OperatePrivilege",
    "OperatePrivilegeGroup",
    "OperateUserRole",
    "ReleaseCollection",
    "ReleasePartitions",
    "RemoveFileResource",
    "RenameCollection",
    "RestoreRBAC",
    "SetRLSPrincipalTags",
    "TransferNode",
    "TransferReplica",
    "UnpinSnapshotData",
    "UpdateCredential",
    "UpdateReplicateConfiguration",
    "UpdateResourceGroups",
    "UpdateRowPolicy",
];

/// Requests Milvus's RateLimitInterceptor throttles and answers in-message
/// (`GetRequestInfo` and `GetFailedResponse` in `internal/proxy/util.go`); a
/// throttled call of any other limited method gets a gRPC error instead.
const RATE_LIMITED_METHODS: &[&str] = &[
    "Insert",
    "Upsert",
    "Delete",
    "Import",
    "Search",
    "Query",
    "CreateCollection",
    "DropCollection",
    "LoadCollection",
    "ReleaseCollection",
    "CreatePartition",
    "DropPartition",
    "LoadPartitions",
    "ReleasePartitions",
    "CreateIndex",
    "DropIndex",
    "Flush",
    "ManualCompaction",
    "CreateDatabase",
    "DropDatabase",
    "AlterDatabase",
];

/// The method name of a MilvusService path (`/milvus.proto.milvus.MilvusService/
/// Search` → `Search`); a bare name passes through. `None` for another service.
pub fn method_name(path: &str) -> Option<&str> {
    let p = path.trim_start_matches('/');
    match p.split_once('/') {
        Some((service, method)) if service == SERVICE && !method.contains('/') => Some(method),
        Some(_) => None,
        None if !p.is_empty() => Some(p),
        None => None,
    }
}

/// Where the response of `method` (a path or a bare name) keeps its status.
pub fn status_place(method: &str) -> StatusPlace {
    let Some(name) = method_name(method) else {
        return StatusPlace::None;
    };
    if STATUS_METHODS.contains(&name) {
        return StatusPlace::Whole;
    }
    match name {
        "GetComponentStates" => StatusPlace::Field(3),
        "RegisterLink" => StatusPlace::Field(2),
        "Dummy" | "GetReplicateInfo" | "CreateReplicateStream" | "DumpMessages" => {
            StatusPlace::None
        }
        _ => StatusPlace::Field(1),
    }
}

/// Whether a real Milvus answers a throttled call of `method` in-message (with
/// [`failed_response`]) rather than with a gRPC error.
pub fn rate_limits_in_message(method: &str) -> bool {
    method_name(method).is_some_and(|m| RATE_LIMITED_METHODS.contains(&m))
}

/// The failed answer Milvus sends for `method` (a path or a bare name): its
/// response type with only `status` set, or the status itself for methods that
/// return one. Unframed; `None` when the method's response has no status.
pub fn failed_response(method: &str, status: &Status) -> Option<Vec<u8>> {
    match status_place(method) {
        StatusPlace::Whole => Some(status.encode()),
        StatusPlace::Field(n) => {
            let mut out = Vec::new();
            wire::put_len_field(&mut out, n, &status.encode());
            Some(out)
        }
        StatusPlace::None => None,
    }
}

/// [`failed_response`] as one gRPC message (5-byte prefix), ready to send before
/// trailers with grpc-status 0.
pub fn failed_response_frame(method: &str, status: &Status) -> Option<Bytes> {
    failed_response(method, status).map(|m| frame::encode(&m, false))
}

/// The status a Milvus answer carries, read without knowing its method.
///
/// The rule: a message whose field 1 is length-delimited is a wrapper and field 1
/// is its status (every Milvus response but three keeps it there); a message
/// whose field 1 is a varint, or that has no field 1, is read as a bare Status,
/// accepted only if every field has the type and number Status gives it. Anything
/// else (bytes that do not parse, a field 1 that is not a valid Status, a
/// non-UTF-8 reason) is `None`: not a status, rather than a guess. Where the
/// method is known, prefer [`in_message_status_for`]: `GetComponentStates` keeps
/// a ComponentInfo in field 1 that this rule cannot tell from a status.
pub fn in_message_status(msg: &[u8]) -> Option<Status> {
    let top: Vec<Field> = wire::collect(msg, 0..msg.len()).ok()?;
    let first = top.iter().rev().find(|f| f.number == 1);
    match first {
        Some(f) if f.wire_type == WireType::Len => parse_status(msg, f.value.clone(), true),
        Some(f) if f.wire_type == WireType::Varint => parse_status(msg, 0..msg.len(), false),
        Some(_) => None,
        None => parse_status(msg, 0..msg.len(), false),
    }
}

/// The status in the answer of `method` (a path or a bare name), read where that
/// method's response keeps it. A wrapper without a status field is a success (the
/// protobuf default, and what pymilvus reads). `None` for methods without a
/// status and for bytes that do not parse.
pub fn in_message_status_for(method: &str, msg: &[u8]) -> Option<Status> {
    match status_place(method) {
        StatusPlace::Whole => parse_status(msg, 0..msg.len(), true),
        StatusPlace::Field(n) => {
            let top: Vec<Field> = wire::collect(msg, 0..msg.len()).ok()?;
            match top.iter().rev().find(|f| f.number == n) {
                Some(f) if f.wire_type == WireType::Len => parse_status(msg, f.value.clone(), true),
                Some(_) => None,
                None => Some(Status::success()),
            }
        }
        StatusPlace::None => None,
    }
}

/// Read a Status at `range`. Fields 1-6 must have their schema's wire types and
/// strings must be UTF-8; other field numbers are skipped when `allow_unknown`
/// (a newer Milvus may add fields) and make it not a status otherwise.
pub(crate) fn parse_status(
    buf: &[u8],
    range: std::ops::Range<usize>,
    allow_unknown: bool,
) -> Option<Status> {
    let mut s = Status::default();
    for f in wire::fields_in(buf, range) {
        let f = f.ok()?;
        match (f.number, f.wire_type) {
            (1, WireType::Varint) => s.error_code = f.as_i32(),
            (2, WireType::Len) => s.reason = utf8(buf, &f)?,
            (3, WireType::Varint) => s.code = f.as_i32(),
            (4, WireType::Varint) => s.retriable = f.as_bool(),
            (5, WireType::Len) => s.detail = utf8(buf, &f)?,
            (6, WireType::Len) => {
                let (mut k, mut v) = (String::new(), String::new());
                for e in wire::fields_in(buf, f.value.clone()) {
                    let e = e.ok()?;
                    match (e.number, e.wire_type) {
                        (1, WireType::Len) => k = utf8(buf, &e)?,
                        (2, WireType::Len) => v = utf8(buf, &e)?,
                        _ => return None,
                    }
                }
                s.extra_info.push((k, v));
            }
            (1..=6, _) => return None,
            _ if allow_unknown => {}
            _ => return None,
        }
    }
    Some(s)
}

fn utf8(buf: &[u8], f: &Field) -> Option<String> {
    std::str::from_utf8(f.bytes(buf)).ok().map(str::to_string)
}

/// A float as Go's `%v` prints it (`strconv.FormatFloat(v, 'g', -1, 64)`): the
/// shortest digits, in exponent form when the exponent is below -4 or at least 6
/// (`100`, `0.5`, `1e+06`, `1.5e-05`), so reasons read as Milvus writes them.
pub fn go_float(v: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    if !v.is_finite() {
        return if v.is_nan() {
            "NaN".to_string()
        } else if v > 0.0 {
            "+Inf".to_string()
        } else {
            "-Inf".to_string()
        };
    }
    let e = format!("{v:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((e.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        format!("{v}")
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_float_matches_go() {
        for (v, want) in [
            (100.0, "100"),
            (0.5, "0.5"),
            (1e6, "1e+06"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (0.0, "0"),
        ] {
            assert_eq!(go_float(v), want, "{v}");
        }
    }

    #[test]
    fn status_places() {
        assert_eq!(
            status_place("/milvus.proto.milvus.MilvusService/Search"),
            StatusPlace::Field(1)
        );
        assert_eq!(status_place("CreateCollection"), StatusPlace::Whole);
        assert_eq!(status_place("GetComponentStates"), StatusPlace::Field(3));
        assert_eq!(status_place("/qdrant.Points/Search"), StatusPlace::None);
        assert_eq!(
            method_name("/milvus.proto.milvus.MilvusService/Query"),
            Some("Query")
        );
        assert!(rate_limits_in_message("Search"));
        assert!(!rate_limits_in_message("HybridSearch"));
    }

    #[test]
    fn statuses_read_back() {
        let st = Status::rate_limited(DEFAULT_RATE);
        assert!(!st.is_success());
        let whole = failed_response("DropCollection", &st).unwrap();
        assert_eq!(in_message_status(&whole), Some(st.clone()));
        assert_eq!(
            in_message_status_for("DropCollection", &whole),
            Some(st.clone())
        );
        let wrapped = failed_response("Search", &st).unwrap();
        assert_eq!(in_message_status(&wrapped), Some(st.clone()));
        assert_eq!(in_message_status_for("Search", &wrapped), Some(st));
        // Not statuses.
        assert_eq!(in_message_status(&[0x0d, 0, 0, 0, 0]), None);
        assert_eq!(in_message_status(&[0xff]), None);
        assert_eq!(in_message_status(&[0x12, 0x02, 0xff, 0xfe]), None);
        // An empty answer is a success either way.
        assert!(in_message_status(&[]).is_some_and(|s| s.is_success()));
        assert_eq!(
            in_message_status_for("Search", &[]),
            Some(Status::success())
        );
    }
}
