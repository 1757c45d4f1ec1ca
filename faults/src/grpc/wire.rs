//! The protobuf wire format, read and written by hand.
//!
//! brownout edits a few response messages (Milvus search results, statuses, Triton
//! stream errors) and must keep every byte it does not change exactly as the server
//! wrote it: field order, unknown fields, non-canonical varints, packed or unpacked
//! repeated fields. A code generator's decode/encode round trip keeps none of that,
//! so the reader here yields each field as a number, a wire type and *byte ranges*
//! into the original buffer, and callers splice new bytes between the old ones.
//!
//! The reader is flat and never recurses: a caller descends into a sub-message only
//! where its schema says one is, to a depth the schema fixes, so hostile nesting
//! cannot blow the stack. Every length is checked against the bytes that are really
//! there before anything is sliced; groups (wire types 3 and 4, deprecated since
//! proto2 and absent from every schema brownout reads) are an error rather than
//! something to skip blindly.

use std::ops::Range;

/// The largest field number protobuf allows (2^29 − 1).
pub const MAX_FIELD_NUMBER: u32 = (1 << 29) - 1;

/// How a field's payload is laid out on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireType {
    /// A base-128 varint (int32/64, uint32/64, sint32/64, bool, enum).
    Varint,
    /// Eight little-endian bytes (fixed64, sfixed64, double).
    I64,
    /// A varint length, then that many bytes (string, bytes, messages, packed
    /// repeated scalars).
    Len,
    /// Four little-endian bytes (fixed32, sfixed32, float).
    I32,
}

impl WireType {
    /// The three-bit code written in a tag.
    pub fn code(self) -> u8 {
        match self {
            WireType::Varint => 0,
            WireType::I64 => 1,
            WireType::Len => 2,
            WireType::I32 => 5,
        }
    }
}

/// Why a buffer is not a well-formed protobuf message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer ends inside a tag, a varint or a fixed-width value.
    #[error("protobuf message truncated at byte {at}")]
    Truncated { at: usize },
    /// A length-delimited field claims more bytes than the message has left: a
    /// lying length, never trusted for an allocation.
    #[error("protobuf length {len} at byte {at} runs past the end of the message")]
    LengthOverrun { at: usize, len: u64 },
    /// A varint longer than ten bytes (no 64-bit value needs more).
    #[error("protobuf varint longer than 10 bytes at byte {at}")]
    VarintTooLong { at: usize },
    /// Field number 0 or above 2^29 − 1.
    #[error("invalid protobuf field number {number} at byte {at}")]
    BadFieldNumber { at: usize, number: u64 },
    /// Wire types 6 and 7 do not exist.
    #[error("invalid protobuf wire type {wire_type} at byte {at}")]
    BadWireType { at: usize, wire_type: u8 },
    /// Wire types 3 and 4 (groups): deprecated, never in the schemas read here.
    #[error("protobuf group (wire type {wire_type}) at byte {at} is not supported")]
    Group { at: usize, wire_type: u8 },
    /// A packed repeated field whose length is not a whole number of elements.
    #[error("packed field at byte {at} is not a whole number of {width}-byte elements")]
    RaggedPacked { at: usize, width: usize },
}

/// One field of a message, located in the buffer it was read from. All ranges are
/// absolute offsets into that buffer, so a caller can splice at any depth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The field number (1 ..= 2^29 − 1).
    pub number: u32,
    /// How the payload is encoded (tells a packed repeated field from one
    /// element, and a sub-message from a number).
    pub wire_type: WireType,
    /// The whole field: tag, any length prefix, payload.
    pub span: Range<usize>,
    /// The payload: a varint's own bytes, the fixed-width bytes, or a
    /// length-delimited field's contents (without its length prefix).
    pub value: Range<usize>,
    /// The decoded varint, the fixed-width value as an integer (little-endian), or
    /// the length of a length-delimited payload.
    pub int: u64,
}

impl Field {
    /// The value as a signed 64-bit integer (int64, and int32/enum, which protobuf
    /// sign-extends to 64 bits on the wire).
    pub fn as_i64(&self) -> i64 {
        self.int as i64
    }

    /// The value as a 32-bit signed integer (int32, enum).
    pub fn as_i32(&self) -> i32 {
        self.int as i32
    }

    /// The value as a bool (any non-zero varint is true, as every decoder reads it).
    pub fn as_bool(&self) -> bool {
        self.int != 0
    }

    /// A fixed32 field read as a float.
    pub fn as_f32(&self) -> f32 {
        f32::from_bits(self.int as u32)
    }

    /// A fixed64 field read as a double.
    pub fn as_f64(&self) -> f64 {
        f64::from_bits(self.int)
    }

    /// The payload's bytes in `buf` (the buffer this field was read from).
    pub fn bytes<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.value.clone()).unwrap_or(&[])
    }
}

/// The fields of one message, in wire order; stops at the first error (yielded
/// once) and yields nothing after it.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
    /// An error to yield next (a range outside the buffer).
    pending: Option<WireError>,
    done: bool,
}

/// Iterate the fields of the message that fills `buf`.
pub fn fields(buf: &[u8]) -> Fields<'_> {
    Fields {
        buf,
        pos: 0,
        end: buf.len(),
        pending: None,
        done: false,
    }
}

/// Iterate the fields of the sub-message at `range` of `buf` (a length-delimited
/// field's `value`), with offsets still relative to `buf`. A range outside `buf`
/// yields one `Truncated` error.
pub fn fields_in(buf: &[u8], range: Range<usize>) -> Fields<'_> {
    let ok = range.start <= range.end && range.end <= buf.len();
    Fields {
        buf,
        pos: range.start,
        end: if ok { range.end } else { range.start },
        pending: (!ok).then_some(WireError::Truncated { at: range.start }),
        done: false,
    }
}

/// Every field of the message at `range`, or the first wire error.
pub fn collect(buf: &[u8], range: Range<usize>) -> Result<Vec<Field>, WireError> {
    fields_in(buf, range).collect()
}

impl Iterator for Fields<'_> {
    type Item = Result<Field, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.pending.take() {
            self.done = true;
            return Some(Err(e));
        }
        if self.done || self.pos >= self.end {
            return None;
        }
        let r = read_field(self.buf, self.pos, self.end);
        match &r {
            Ok(f) => self.pos = f.span.end,
            Err(_) => self.done = true,
        }
        Some(r)
    }
}

fn read_field(buf: &[u8], start: usize, end: usize) -> Result<Field, WireError> {
    let (tag, pos) = read_varint_in(buf, start, end)?;
    let wire = (tag & 7) as u8;
    let number = tag >> 3;
    if number == 0 || number > u64::from(MAX_FIELD_NUMBER) {
        return Err(WireError::BadFieldNumber { at: start, number });
    }
    let number = number as u32;
    let (wire_type, value, int) = match wire {
        0 => {
            let (v, next) = read_varint_in(buf, pos, end)?;
            (WireType::Varint, pos..next, v)
        }
        1 => {
            let next = pos
                .checked_add(8)
                .filter(|&n| n <= end)
                .ok_or(WireError::Truncated { at: pos })?;
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[pos..next]);
            (WireType::I64, pos..next, u64::from_le_bytes(b))
        }
        2 => {
            let (len, body) = read_varint_in(buf, pos, end)?;
            let stop = usize::try_from(len)
                .ok()
                .and_then(|l| body.checked_add(l))
                .filter(|&s| s <= end)
                .ok_or(WireError::LengthOverrun { at: pos, len })?;
            (WireType::Len, body..stop, len)
        }
        5 => {
            let next = pos
                .checked_add(4)
                .filter(|&n| n <= end)
                .ok_or(WireError::Truncated { at: pos })?;
            let mut b = [0u8; 4];
            b.copy_from_slice(&buf[pos..next]);
            (WireType::I32, pos..next, u64::from(u32::from_le_bytes(b)))
        }
        3 | 4 => {
            return Err(WireError::Group {
                at: start,
                wire_type: wire,
            })
        }
        other => {
            return Err(WireError::BadWireType {
                at: start,
                wire_type: other,
            })
        }
    };
    Ok(Field {
        number,
        wire_type,
        span: start..value.end,
        value,
        int,
    })
}

/// Read one varint starting at `pos`; returns the value and the offset after it.
pub fn read_varint(buf: &[u8], pos: usize) -> Result<(u64, usize), WireError> {
    read_varint_in(buf, pos, buf.len())
}

fn read_varint_in(buf: &[u8], pos: usize, end: usize) -> Result<(u64, usize), WireError> {
    let end = end.min(buf.len());
    let mut value: u64 = 0;
    let mut i = pos;
    for shift in 0..10u32 {
        if i >= end {
            return Err(WireError::Truncated { at: i });
        }
        let b = buf[i];
        i += 1;
        // The tenth byte may only carry the top bit of a 64-bit value; extra bits
        // are dropped as protobuf's own decoders drop them.
        value |= u64::from(b & 0x7f).checked_shl(7 * shift).unwrap_or(0);
        if b & 0x80 == 0 {
            return Ok((value, i));
        }
    }
    Err(WireError::VarintTooLong { at: pos })
}

/// The elements of a packed repeated varint field (its payload at `range`), as
/// byte ranges of each element's own varint.
pub fn packed_varints(buf: &[u8], range: Range<usize>) -> Result<Vec<Range<usize>>, WireError> {
    if range.start > range.end || range.end > buf.len() {
        return Err(WireError::Truncated { at: range.start });
    }
    let mut out = Vec::new();
    let mut pos = range.start;
    while pos < range.end {
        let (_, next) = read_varint_in(buf, pos, range.end)?;
        out.push(pos..next);
        pos = next;
    }
    Ok(out)
}

/// The elements of a packed repeated fixed-width field (4 for float/fixed32, 8 for
/// double/fixed64) at `range`, as byte ranges.
pub fn packed_fixed(
    range: Range<usize>,
    width: usize,
    buf_len: usize,
) -> Result<Vec<Range<usize>>, WireError> {
    if range.start > range.end || range.end > buf_len {
        return Err(WireError::Truncated { at: range.start });
    }
    let len = range.end - range.start;
    if width == 0 || !len.is_multiple_of(width) {
        return Err(WireError::RaggedPacked {
            at: range.start,
            width,
        });
    }
    Ok((0..len / width)
        .map(|i| range.start + i * width..range.start + (i + 1) * width)
        .collect())
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/// Bytes a varint of `v` takes.
pub fn varint_len(v: u64) -> usize {
    let bits = 64 - v.max(1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Append `v` as a varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Append a field tag.
pub fn put_tag(out: &mut Vec<u8>, number: u32, wire_type: WireType) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wire_type.code()));
}

/// Append a varint field (int64, uint64, enum, bool; int32 sign-extended as
/// protobuf requires: pass `v as i64 as u64`).
pub fn put_varint_field(out: &mut Vec<u8>, number: u32, v: u64) {
    put_tag(out, number, WireType::Varint);
    put_varint(out, v);
}

/// Append a length-delimited field holding `payload`.
pub fn put_len_field(out: &mut Vec<u8>, number: u32, payload: &[u8]) {
    put_len_header(out, number, payload.len());
    out.extend_from_slice(payload);
}

/// Append the tag and length of a length-delimited field whose `len` payload
/// bytes the caller appends next.
pub fn put_len_header(out: &mut Vec<u8>, number: u32, len: usize) {
    put_tag(out, number, WireType::Len);
    put_varint(out, len as u64);
}

/// Append a fixed32 field.
pub fn put_fixed32_field(out: &mut Vec<u8>, number: u32, v: u32) {
    put_tag(out, number, WireType::I32);
    out.extend_from_slice(&v.to_le_bytes());
}

/// Append a fixed64 field.
pub fn put_fixed64_field(out: &mut Vec<u8>, number: u32, v: u64) {
    put_tag(out, number, WireType::I64);
    out.extend_from_slice(&v.to_le_bytes());
}

/// Bytes a length-delimited field of `len` payload bytes takes, tag included.
pub fn len_field_size(number: u32, len: usize) -> usize {
    varint_len(u64::from(number) << 3) + varint_len(len as u64) + len
}

/// `src` with each range replaced by its bytes. Ranges must be in order and must
/// not overlap; one that does (or lies outside `src`) is ignored rather than
/// trusted.
pub fn splice(src: &[u8], edits: &[(Range<usize>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len());
    let mut at = 0;
    for (r, bytes) in edits {
        if r.start < at || r.start > r.end || r.end > src.len() {
            continue;
        }
        out.extend_from_slice(&src[at..r.start]);
        out.extend_from_slice(bytes);
        at = r.end;
    }
    out.extend_from_slice(&src[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
            assert_eq!(read_varint(&b, 0), Ok((v, b.len())));
        }
        // int32 -1 is ten bytes on the wire.
        let mut b = Vec::new();
        put_varint(&mut b, -1i64 as u64);
        assert_eq!(b.len(), 10);
    }

    #[test]
    fn reads_every_wire_type_with_ranges() {
        let mut m = Vec::new();
        put_varint_field(&mut m, 1, 150);
        put_len_field(&mut m, 2, b"testing");
        put_fixed32_field(&mut m, 3, 1.5f32.to_bits());
        put_fixed64_field(&mut m, 4, 2.5f64.to_bits());
        let f: Vec<Field> = fields(&m).collect::<Result<_, _>>().unwrap();
        assert_eq!(f.len(), 4);
        assert_eq!((f[0].number, f[0].int), (1, 150));
        assert_eq!(f[1].bytes(&m), b"testing");
        assert_eq!(f[2].as_f32(), 1.5);
        assert_eq!(f[3].as_f64(), 2.5);
        assert_eq!(f[3].span.end, m.len());
        // Concatenated spans reproduce the message.
        let joined: Vec<u8> = f.iter().flat_map(|x| m[x.span.clone()].to_vec()).collect();
        assert_eq!(joined, m);
    }

    #[test]
    fn rejects_groups_bad_numbers_and_lying_lengths() {
        assert!(matches!(
            fields(&[0x0b]).next(),
            Some(Err(WireError::Group { .. }))
        ));
        assert!(matches!(
            fields(&[0x0f]).next(),
            Some(Err(WireError::BadWireType { .. }))
        ));
        assert!(matches!(
            fields(&[0x00, 0x00]).next(),
            Some(Err(WireError::BadFieldNumber { .. }))
        ));
        // Field 1, LEN, claims 2^32 bytes.
        assert!(matches!(
            fields(&[0x0a, 0x80, 0x80, 0x80, 0x80, 0x10]).next(),
            Some(Err(WireError::LengthOverrun { .. }))
        ));
        assert!(matches!(
            fields(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])
                .next(),
            Some(Err(WireError::VarintTooLong { .. }))
        ));
        // After an error nothing more comes out.
        let mut it = fields(&[0x0b, 0x08, 0x01]);
        assert!(it.next().is_some_and(|r| r.is_err()));
        assert!(it.next().is_none());
    }

    #[test]
    fn sub_ranges_stay_absolute_and_bounded() {
        let mut inner = Vec::new();
        put_varint_field(&mut inner, 7, 9);
        let mut m = Vec::new();
        put_varint_field(&mut m, 1, 1);
        put_len_field(&mut m, 2, &inner);
        let outer: Vec<Field> = fields(&m).collect::<Result<_, _>>().unwrap();
        let sub: Vec<Field> = collect(&m, outer[1].value.clone()).unwrap();
        assert_eq!(sub[0].number, 7);
        assert_eq!(sub[0].span.start, outer[1].value.start);
        assert!(collect(&m, 0..m.len() + 1).is_err());
        let mut bad = fields_in(&m, 5..100);
        assert!(matches!(
            bad.next(),
            Some(Err(WireError::Truncated { at: 5 }))
        ));
        assert!(bad.next().is_none());
    }

    #[test]
    fn never_panics_on_garbage() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..300usize {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            for f in fields(&buf).flatten() {
                assert!(f.span.end <= buf.len());
                if f.wire_type == WireType::Len {
                    let _ = collect(&buf, f.value.clone());
                    let _ = packed_varints(&buf, f.value.clone());
                    let _ = packed_fixed(f.value.clone(), 4, buf.len());
                }
            }
        }
    }

    #[test]
    fn splice_ignores_bad_edits() {
        let src = b"abcdef";
        assert_eq!(
            splice(src, &[(1..2, b"X".to_vec()), (4..6, Vec::new())]),
            b"aXcd"
        );
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = 3..2;
        assert_eq!(
            splice(src, &[(backwards, b"X".to_vec()), (0..99, Vec::new())]),
            src
        );
    }
}
