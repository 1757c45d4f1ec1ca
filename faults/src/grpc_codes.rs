//! gRPC status codes by name, for profiles (`grpc_status: unavailable`) and for
//! records and explanations that name them.

/// The 17 codes of gRPC's `status.proto`, by number.
pub const NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The code a name stands for, in any case (`unavailable`, `UNAVAILABLE`), with
/// or without grpcio's `StatusCode.` prefix.
pub fn code_of(name: &str) -> Option<u32> {
    let n = name.trim();
    let n = n.strip_prefix("StatusCode.").unwrap_or(n);
    NAMES
        .iter()
        .position(|c| c.eq_ignore_ascii_case(n))
        .map(|i| i as u32)
}

/// The name of a code (`UNKNOWN` for numbers gRPC does not define).
pub fn name_of(code: u32) -> &'static str {
    NAMES.get(code as usize).copied().unwrap_or("UNKNOWN")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        for (i, n) in NAMES.iter().enumerate() {
            assert_eq!(code_of(n), Some(i as u32));
            assert_eq!(code_of(&n.to_ascii_lowercase()), Some(i as u32));
            assert_eq!(name_of(i as u32), *n);
        }
        assert_eq!(code_of("StatusCode.UNAVAILABLE"), Some(14));
        assert_eq!(code_of("unavailabl"), None);
        assert_eq!(name_of(99), "UNKNOWN");
    }
}
