//! gRPC's length-prefixed messages: one flag byte (0 plain, 1 compressed with the
//! call's `grpc-encoding`), a 4-byte big-endian length, then the message.
//!
//! HTTP/2 DATA frames split and join these messages anywhere, so anything that acts
//! per message (a stream fault, a search-result edit, reading an in-message status)
//! first cuts the body back into messages. [`MessageSplitter`] does that
//! incrementally and without changing a byte: a message that lies whole inside one
//! chunk comes out as a zero-copy slice of it, and only a message split across
//! chunks is copied, once. It never buffers more than its cap: a message that
//! declares a larger length (a real one, or a lying prefix) is passed on piece by
//! piece as its bytes arrive ([`Piece::Oversized`]), so a hostile peer cannot grow
//! the proxy's memory, and a body that ends inside a message is an error the caller
//! records, never a silent clean end.

use bytes::{Buf, Bytes, BytesMut};

/// Bytes of the prefix in front of every message.
pub const PREFIX_LEN: usize = 5;

/// The cap used by default: gRPC's own default receive limit (4 MiB), which is what
/// a stock client or server would refuse beyond anyway.
pub const DEFAULT_MAX_MESSAGE: usize = 4 << 20;

/// One whole gRPC message, prefix included, as it came from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    frame: Bytes,
}

impl Message {
    /// The message framed as on the wire (prefix and payload), for forwarding it
    /// unchanged.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }

    /// The frame, by value.
    pub fn into_frame(self) -> Bytes {
        self.frame
    }

    /// Whether the flag byte says the payload is compressed (content faults and
    /// edits must leave such a message alone and say so).
    pub fn compressed(&self) -> bool {
        self.frame.first() == Some(&1)
    }

    /// The payload: a serialized protobuf message unless [`Message::compressed`].
    /// Zero-copy.
    pub fn payload(&self) -> Bytes {
        self.frame.slice(PREFIX_LEN.min(self.frame.len())..)
    }

    /// A message from a complete frame, checked: the flag is 0 or 1 and the length
    /// matches.
    pub fn from_frame(frame: Bytes) -> Result<Message, FrameError> {
        let (_, declared) = prefix(&frame, 0)?;
        let have = (frame.len() - PREFIX_LEN) as u64;
        if have < u64::from(declared) {
            return Err(FrameError::Truncated {
                at: 0,
                missing: u64::from(declared) - have,
            });
        }
        if have > u64::from(declared) {
            return Err(FrameError::Trailing {
                at: PREFIX_LEN as u64 + u64::from(declared),
                extra: have - u64::from(declared),
            });
        }
        Ok(Message { frame })
    }
}

/// Frame `payload` as one gRPC message.
pub fn encode(payload: &[u8], compressed: bool) -> Bytes {
    let mut out = Vec::with_capacity(PREFIX_LEN + payload.len());
    out.push(u8::from(compressed));
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// Why a body is not a sequence of well-formed gRPC messages. Offsets count bytes
/// from the start of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The flag byte is neither 0 nor 1 (grpc-go rejects such a message as an
    /// unexpected payload format).
    #[error("gRPC message flag {flag} at byte {at} is neither 0 (plain) nor 1 (compressed)")]
    BadFlag { at: u64, flag: u8 },
    /// The body ended inside a message: fewer bytes came than its prefix declared.
    #[error("body ended {missing} bytes short of the gRPC message that starts at byte {at}")]
    Truncated { at: u64, missing: u64 },
    /// Bytes after the last message of a body that should hold exactly one.
    #[error("{extra} bytes after the gRPC message, at byte {at}")]
    Trailing { at: u64, extra: u64 },
    /// A message declares more than the cap of a caller that needs it whole.
    #[error("gRPC message at byte {at} declares {declared} bytes, above the cap of {max}")]
    TooLarge { at: u64, declared: u32, max: usize },
}

/// What the splitter hands on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// One whole message.
    Message(Message),
    /// Part of a message larger than the cap, passed on as it arrived and never
    /// held whole. The first piece starts with the prefix; the piece with `last`
    /// set ends the message.
    Oversized {
        bytes: Bytes,
        /// The length the prefix declared.
        declared: u32,
        compressed: bool,
        first: bool,
        last: bool,
    },
}

impl Piece {
    /// The bytes to forward for this piece.
    pub fn bytes(&self) -> &Bytes {
        match self {
            Piece::Message(m) => m.frame(),
            Piece::Oversized { bytes, .. } => bytes,
        }
    }
}

/// Cuts a chunked gRPC body into messages, incrementally.
///
/// Every byte pushed comes out exactly once and in order (concatenating the
/// pieces reproduces the input) up to the first error; after an error the splitter
/// yields nothing more, since nothing after a broken prefix can be trusted.
#[derive(Debug)]
pub struct MessageSplitter {
    max: usize,
    /// A message (or prefix) that has started but not ended.
    buf: BytesMut,
    /// Bytes still to pass on of an oversized message.
    oversized_left: u64,
    oversized_declared: u32,
    oversized_compressed: bool,
    /// Body offset of the message being assembled (for error positions).
    at: u64,
    /// Body bytes consumed so far.
    consumed: u64,
    failed: Option<FrameError>,
    messages: u64,
    oversized: u64,
}

impl Default for MessageSplitter {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_MESSAGE)
    }
}

impl MessageSplitter {
    /// A splitter that holds messages up to `max` bytes (payload) whole.
    pub fn new(max: usize) -> Self {
        MessageSplitter {
            max,
            buf: BytesMut::new(),
            oversized_left: 0,
            oversized_declared: 0,
            oversized_compressed: false,
            at: 0,
            consumed: 0,
            failed: None,
            messages: 0,
            oversized: 0,
        }
    }

    /// Whole messages handed on so far.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// Messages passed on in pieces because they were larger than the cap.
    pub fn oversized(&self) -> u64 {
        self.oversized
    }

    /// Bytes held back waiting for the rest of their message (at most the cap plus
    /// the prefix).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The error that stopped the splitter, if one did.
    pub fn error(&self) -> Option<FrameError> {
        self.failed
    }

    /// Feed one chunk. Returns what it completed, in order; an error, if any, is
    /// the last item and stops the splitter.
    pub fn push(&mut self, chunk: &Bytes) -> Vec<Result<Piece, FrameError>> {
        let mut out = Vec::new();
        if self.failed.is_some() {
            return out;
        }
        let mut data = chunk.clone();
        while !data.is_empty() {
            if self.oversized_left > 0 {
                let n = usize::try_from(self.oversized_left)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                let bytes = data.split_to(n);
                self.oversized_left -= n as u64;
                self.consumed += n as u64;
                out.push(Ok(Piece::Oversized {
                    bytes,
                    declared: self.oversized_declared,
                    compressed: self.oversized_compressed,
                    first: false,
                    last: self.oversized_left == 0,
                }));
                continue;
            }
            if self.buf.is_empty() {
                // Fast path: whole messages straight out of the chunk, no copy.
                if data.len() < PREFIX_LEN {
                    self.at = self.consumed;
                    self.buf.extend_from_slice(&data);
                    break;
                }
                let (compressed, declared) = match prefix(&data, self.consumed) {
                    Ok(p) => p,
                    Err(e) => return self.fail(out, e),
                };
                if declared as usize > self.max {
                    let total = PREFIX_LEN as u64 + u64::from(declared);
                    let n = usize::try_from(total).unwrap_or(usize::MAX).min(data.len());
                    let bytes = data.split_to(n);
                    self.at = self.consumed;
                    self.start_oversized(&mut out, bytes, declared, compressed, total);
                    continue;
                }
                let total = PREFIX_LEN + declared as usize;
                if data.len() >= total {
                    let frame = data.split_to(total);
                    self.consumed += total as u64;
                    self.messages += 1;
                    out.push(Ok(Piece::Message(Message { frame })));
                    continue;
                }
                self.at = self.consumed;
                // A declared length is not trusted for an allocation beyond 1 MiB.
                self.buf.reserve(total.min(1 << 20));
                self.buf.extend_from_slice(&data);
                break;
            }
            // A message started in an earlier chunk.
            if self.buf.len() < PREFIX_LEN {
                let take = (PREFIX_LEN - self.buf.len()).min(data.len());
                self.buf.extend_from_slice(&data[..take]);
                data.advance(take);
                if self.buf.len() < PREFIX_LEN {
                    break;
                }
            }
            let (compressed, declared) = match prefix(&self.buf, self.at) {
                Ok(p) => p,
                Err(e) => return self.fail(out, e),
            };
            if declared as usize > self.max {
                // Only the prefix is held here (a partial message is buffered only
                // once its length is known to be within the cap).
                let total = PREFIX_LEN as u64 + u64::from(declared);
                let bytes = self.buf.split().freeze();
                self.start_oversized(&mut out, bytes, declared, compressed, total);
                continue;
            }
            let total = PREFIX_LEN + declared as usize;
            let take = (total - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data.advance(take);
            if self.buf.len() == total {
                let frame = self.buf.split().freeze();
                self.consumed = self.at + total as u64;
                self.messages += 1;
                out.push(Ok(Piece::Message(Message { frame })));
            }
        }
        out
    }

    /// The body ended: an error when it ended inside a message.
    pub fn finish(&mut self) -> Result<(), FrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let err = if self.oversized_left > 0 {
            Some(FrameError::Truncated {
                at: self.at,
                missing: self.oversized_left,
            })
        } else if !self.buf.is_empty() {
            let missing = if self.buf.len() < PREFIX_LEN {
                (PREFIX_LEN - self.buf.len()) as u64
            } else {
                let declared =
                    u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                (PREFIX_LEN as u64 + u64::from(declared)).saturating_sub(self.buf.len() as u64)
            };
            Some(FrameError::Truncated {
                at: self.at,
                missing,
            })
        } else {
            None
        };
        match err {
            Some(e) => {
                self.failed = Some(e);
                Err(e)
            }
            None => Ok(()),
        }
    }

    fn start_oversized(
        &mut self,
        out: &mut Vec<Result<Piece, FrameError>>,
        bytes: Bytes,
        declared: u32,
        compressed: bool,
        total: u64,
    ) {
        let n = bytes.len() as u64;
        self.consumed = self.at + n;
        self.oversized_left = total - n;
        self.oversized_declared = declared;
        self.oversized_compressed = compressed;
        self.oversized += 1;
        out.push(Ok(Piece::Oversized {
            bytes,
            declared,
            compressed,
            first: true,
            last: self.oversized_left == 0,
        }));
    }

    fn fail(
        &mut self,
        mut out: Vec<Result<Piece, FrameError>>,
        e: FrameError,
    ) -> Vec<Result<Piece, FrameError>> {
        self.failed = Some(e);
        self.buf.clear();
        out.push(Err(e));
        out
    }
}

/// Read the prefix at the start of `buf` (at least [`PREFIX_LEN`] bytes); `at` is
/// its body offset, for the error.
fn prefix(buf: &[u8], at: u64) -> Result<(bool, u32), FrameError> {
    if buf.len() < PREFIX_LEN {
        return Err(FrameError::Truncated {
            at,
            missing: (PREFIX_LEN - buf.len()) as u64,
        });
    }
    let flag = buf[0];
    if flag > 1 {
        return Err(FrameError::BadFlag { at, flag });
    }
    Ok((
        flag == 1,
        u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]),
    ))
}

/// Every message of a whole (already buffered) body, each at most `max` bytes:
/// for a unary answer the proxy holds to edit. Anything else is an error.
pub fn split_all(body: &Bytes, max: usize) -> Result<Vec<Message>, FrameError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < body.len() {
        let (_, declared) = prefix(&body[pos..], pos as u64)?;
        if declared as usize > max {
            return Err(FrameError::TooLarge {
                at: pos as u64,
                declared,
                max,
            });
        }
        let end = pos + PREFIX_LEN + declared as usize;
        if end > body.len() {
            return Err(FrameError::Truncated {
                at: pos as u64,
                missing: (end - body.len()) as u64,
            });
        }
        out.push(Message {
            frame: body.slice(pos..end),
        });
        pos = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], cuts: &[usize], max: usize) -> (Vec<Piece>, Option<FrameError>) {
        let mut sp = MessageSplitter::new(max);
        let mut out = Vec::new();
        let mut err = None;
        let mut last = 0;
        for &c in cuts.iter().chain(std::iter::once(&input.len())) {
            for r in sp.push(&Bytes::copy_from_slice(&input[last..c])) {
                match r {
                    Ok(p) => out.push(p),
                    Err(e) => err = Some(e),
                }
            }
            last = c;
        }
        if err.is_none() {
            err = sp.finish().err();
        }
        (out, err)
    }

    fn body(msgs: &[&[u8]]) -> Vec<u8> {
        msgs.iter()
            .flat_map(|m| encode(m, false).to_vec())
            .collect()
    }

    #[test]
    fn cuts_exactly_at_every_split_point() {
        let input = body(&[b"", b"hello", &[7u8; 300], b"x"]);
        for cut in 0..=input.len() {
            let (pieces, err) = run(&input, &[cut], 1024);
            assert_eq!(err, None, "cut {cut}");
            let msgs: Vec<Bytes> = pieces
                .iter()
                .map(|p| match p {
                    Piece::Message(m) => m.payload(),
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(msgs.len(), 4, "cut {cut}");
            assert_eq!(&msgs[1][..], b"hello");
            assert_eq!(msgs[2].len(), 300);
            let joined: Vec<u8> = pieces.iter().flat_map(|p| p.bytes().to_vec()).collect();
            assert_eq!(joined, input);
        }
    }

    #[test]
    fn whole_messages_in_one_chunk_are_zero_copy() {
        let input = Bytes::from(body(&[b"abc", b"defg"]));
        let mut sp = MessageSplitter::default();
        let out = sp.push(&input);
        let Ok(Piece::Message(m)) = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!(m.frame().as_ptr(), input[8..].as_ptr());
    }

    #[test]
    fn oversized_and_lying_lengths_pass_in_pieces_then_fail_at_the_end() {
        // Declares 1 GiB, sends 10 bytes.
        let mut input = vec![0u8, 0x40, 0, 0, 0];
        input.extend_from_slice(&[1u8; 10]);
        let (pieces, err) = run(&input, &[3, 8], 64);
        assert!(matches!(err, Some(FrameError::Truncated { at: 0, .. })));
        let joined: Vec<u8> = pieces.iter().flat_map(|p| p.bytes().to_vec()).collect();
        assert_eq!(joined, input);
        // An oversized message that does end is followed by normal ones.
        let big = vec![9u8; 100];
        let input = body(&[&big, b"ok"]);
        let (pieces, err) = run(&input, &[50], 64);
        assert_eq!(err, None);
        assert!(matches!(pieces.last(), Some(Piece::Message(m)) if &m.payload()[..] == b"ok"));
        assert!(pieces
            .iter()
            .any(|p| matches!(p, Piece::Oversized { last: true, .. })));
    }

    #[test]
    fn bad_flags_and_truncation_are_errors() {
        let (_, err) = run(&[2, 0, 0, 0, 0], &[], 64);
        assert!(matches!(err, Some(FrameError::BadFlag { flag: 2, .. })));
        let (_, err) = run(&[0, 0, 0], &[], 64);
        assert!(matches!(
            err,
            Some(FrameError::Truncated { missing: 2, .. })
        ));
        let mut input = body(&[b"abc"]);
        input.pop();
        let (_, err) = run(&input, &[4], 64);
        assert!(matches!(
            err,
            Some(FrameError::Truncated { missing: 1, .. })
        ));
        assert!(matches!(
            split_all(&Bytes::from(body(&[&[0u8; 10]])), 4),
            Err(FrameError::TooLarge { declared: 10, .. })
        ));
        assert!(Message::from_frame(Bytes::from_static(&[0, 0, 0, 0, 1, 9, 9])).is_err());
    }

    #[test]
    fn compressed_flag_is_reported() {
        let (pieces, _) = run(&encode(b"zz", true), &[], 64);
        assert!(matches!(&pieces[0], Piece::Message(m) if m.compressed()));
    }

    #[test]
    fn garbage_never_panics_and_never_holds_more_than_the_cap() {
        let mut x: u32 = 12345;
        for n in 0..500usize {
            let input: Vec<u8> = (0..n)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8 & if n % 3 == 0 { 1 } else { 0xff }
                })
                .collect();
            let mut sp = MessageSplitter::new(32);
            for c in input.chunks(7) {
                let _ = sp.push(&Bytes::copy_from_slice(c));
                assert!(sp.pending() <= 32 + PREFIX_LEN);
            }
            let _ = sp.finish();
        }
    }
}
