//! gRPC, byte by byte: the pieces the proxy needs to pass gRPC through and to
//! harm it the way real servers do (docs/grpc.md).
//!
//! - [`wire`]: the protobuf wire format, read as (field, wire type, byte range) so
//!   edits splice into the original bytes, and written with a few helpers.
//! - [`frame`]: gRPC's length-prefixed messages, cut incrementally out of DATA
//!   frames with a cap on what is held.
//! - [`status`]: status codes by name and number, `grpc-message` encoding,
//!   `grpc-timeout`.
//! - [`milvus`]: Milvus's in-message `common.Status`, the failed answers it sends
//!   under load, and vector result faults on its search results.
//! - [`triton`]: errors inside Triton's inference streams.
//!
//! Nothing here depends on a protobuf code generator: the few messages brownout
//! reads are small, and a generated decode/encode round trip would not keep the
//! upstream's bytes.

pub mod frame;
pub mod milvus;
pub mod status;
pub mod triton;
pub mod wire;

pub use frame::{Message, MessageSplitter, Piece};
pub use status::Code;

/// The `content-type` of a gRPC call: `application/grpc`, optionally `+proto`,
/// `+json` or another suffix, with any parameters.
pub fn is_grpc_content_type(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or("").trim();
    let Some(rest) = media
        .get(..16)
        .filter(|p| p.eq_ignore_ascii_case("application/grpc"))
        .map(|_| &media[16..])
    else {
        return false;
    };
    rest.is_empty() || rest.starts_with('+')
}

/// `(service, method)` of a gRPC path (`/package.Service/Method`), for records.
pub fn split_path(path: &str) -> Option<(&str, &str)> {
    let p = path.strip_prefix('/')?;
    let (service, method) = p.split_once('/')?;
    if service.is_empty() || method.is_empty() || method.contains('/') {
        return None;
    }
    Some((service, method))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        for ok in [
            "application/grpc",
            "application/grpc+proto",
            "APPLICATION/GRPC+json; charset=utf-8",
            "application/grpc ; x=y",
        ] {
            assert!(is_grpc_content_type(ok), "{ok}");
        }
        for no in [
            "application/grpc-web",
            "application/json",
            "application/grp",
            "",
        ] {
            assert!(!is_grpc_content_type(no), "{no}");
        }
        assert_eq!(
            split_path("/milvus.proto.milvus.MilvusService/Search"),
            Some(("milvus.proto.milvus.MilvusService", "Search"))
        );
        assert_eq!(split_path("/x"), None);
        assert_eq!(split_path("x/y"), None);
    }
}
