//! Side-tap decoding of compressed responses, for measurement only.
//!
//! Clients built on httpx send `Accept-Encoding: gzip` and some servers compress
//! everything. The client gets the compressed bytes untouched; a copy is decoded
//! here, incrementally, so TTFT and tokens can still be measured. A decoding error
//! only stops measurement, never the exchange.

use std::io::Write;

use bytes::Bytes;

/// An incremental decoder fed the compressed frames as they pass.
pub enum TapDecoder {
    Gzip(flate2::write::GzDecoder<Vec<u8>>),
    Deflate(flate2::write::ZlibDecoder<Vec<u8>>),
    Brotli(Box<brotli_decompressor::DecompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Decoder<'static, Vec<u8>>),
}

impl std::fmt::Debug for TapDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TapDecoder::Gzip(_) => "TapDecoder::Gzip",
            TapDecoder::Deflate(_) => "TapDecoder::Deflate",
            TapDecoder::Brotli(_) => "TapDecoder::Brotli",
            TapDecoder::Zstd(_) => "TapDecoder::Zstd",
        })
    }
}

impl TapDecoder {
    /// A decoder for a `Content-Encoding` value; `None` for identity or unknown codings.
    pub fn for_encoding(coding: &str) -> Option<Self> {
        match coding.trim().to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Some(TapDecoder::Gzip(flate2::write::GzDecoder::new(Vec::new()))),
            "deflate" => Some(TapDecoder::Deflate(flate2::write::ZlibDecoder::new(
                Vec::new(),
            ))),
            "br" => Some(TapDecoder::Brotli(Box::new(
                brotli_decompressor::DecompressorWriter::new(Vec::new(), 4096),
            ))),
            "zstd" => zstd::stream::write::Decoder::new(Vec::new())
                .ok()
                .map(TapDecoder::Zstd),
            _ => None,
        }
    }

    fn out(&mut self) -> &mut Vec<u8> {
        match self {
            TapDecoder::Gzip(d) => d.get_mut(),
            TapDecoder::Deflate(d) => d.get_mut(),
            TapDecoder::Brotli(d) => d.get_mut(),
            TapDecoder::Zstd(d) => d.get_mut(),
        }
    }

    /// Feed compressed bytes; returns what decoded so far. `Err`: the stream is
    /// corrupt (stop measuring).
    pub fn push(&mut self, data: &[u8]) -> std::io::Result<Bytes> {
        match self {
            TapDecoder::Gzip(d) => {
                d.write_all(data)?;
                d.flush()?;
            }
            TapDecoder::Deflate(d) => {
                d.write_all(data)?;
                d.flush()?;
            }
            TapDecoder::Brotli(d) => {
                d.write_all(data)?;
                d.flush()?;
            }
            TapDecoder::Zstd(d) => {
                d.write_all(data)?;
                d.flush()?;
            }
        }
        Ok(Bytes::from(std::mem::take(self.out())))
    }

    /// Decode a whole body held in memory, to rewrite it (vector faults); `Err` when
    /// it is corrupt, truncated, or decodes to more than `cap` bytes (a decompression
    /// bomb must not take the proxy's memory). Read-side decoders are used because,
    /// unlike the incremental ones, they report a stream that ends early: sending a
    /// partial body on as identity would silently lose data.
    pub fn decode_whole(self, data: &[u8], cap: usize) -> std::io::Result<Bytes> {
        use std::io::Read;
        let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
        let mut out = Vec::new();
        match self {
            TapDecoder::Gzip(_) => flate2::read::MultiGzDecoder::new(data)
                .take(limit)
                .read_to_end(&mut out)?,
            TapDecoder::Deflate(_) => flate2::read::ZlibDecoder::new(data)
                .take(limit)
                .read_to_end(&mut out)?,
            TapDecoder::Brotli(_) => brotli_decompressor::Decompressor::new(data, 4096)
                .take(limit)
                .read_to_end(&mut out)?,
            TapDecoder::Zstd(_) => zstd::stream::read::Decoder::new(data)?
                .take(limit)
                .read_to_end(&mut out)?,
        };
        if out.len() > cap {
            return Err(std::io::Error::other("decoded body over the inspect limit"));
        }
        Ok(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(coding: &str, compressed: Vec<u8>, plain: &[u8]) {
        let mut d = TapDecoder::for_encoding(coding).unwrap();
        let mut got = Vec::new();
        // Feed in small, odd-sized pieces, as frames arrive.
        for chunk in compressed.chunks(7) {
            got.extend_from_slice(&d.push(chunk).unwrap());
        }
        assert_eq!(got, plain, "{coding}");
    }

    #[test]
    fn decodes_every_coding_incrementally() {
        let plain: Vec<u8> = (0..2000)
            .flat_map(|i| format!("data: {{\"n\":{i}}}\n\n").into_bytes())
            .collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain).unwrap();
        roundtrip("gzip", gz.finish().unwrap(), &plain);
        let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zl.write_all(&plain).unwrap();
        roundtrip("deflate", zl.finish().unwrap(), &plain);
        roundtrip(
            "zstd",
            zstd::stream::encode_all(&plain[..], 3).unwrap(),
            &plain,
        );
        assert!(TapDecoder::for_encoding("identity").is_none());
        assert!(TapDecoder::for_encoding("compress").is_none());
    }

    #[test]
    fn decodes_a_whole_body_within_a_cap() {
        let plain = br#"{"result":[{"id":1,"score":0.5}],"status":"ok"}"#.repeat(50);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain).unwrap();
        let packed = gz.finish().unwrap();
        let d = TapDecoder::for_encoding("gzip").unwrap();
        assert_eq!(&d.decode_whole(&packed, 1 << 20).unwrap()[..], &plain[..]);
        let d = TapDecoder::for_encoding("gzip").unwrap();
        assert!(d.decode_whole(&packed, 100).is_err());
        let d = TapDecoder::for_encoding("zstd").unwrap();
        let z = zstd::stream::encode_all(&plain[..], 3).unwrap();
        assert_eq!(&d.decode_whole(&z, 1 << 20).unwrap()[..], &plain[..]);
        let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zl.write_all(&plain).unwrap();
        let d = TapDecoder::for_encoding("deflate").unwrap();
        assert_eq!(
            &d.decode_whole(&zl.finish().unwrap(), 1 << 20).unwrap()[..],
            &plain[..]
        );
        let d = TapDecoder::for_encoding("gzip").unwrap();
        assert!(d.decode_whole(b"not gzip", 1 << 20).is_err());
        // A body cut short is an error, never a shorter body.
        let d = TapDecoder::for_encoding("gzip").unwrap();
        assert!(d
            .decode_whole(&packed[..packed.len() - 4], 1 << 20)
            .is_err());
        let d = TapDecoder::for_encoding("zstd").unwrap();
        assert!(d.decode_whole(&z[..z.len() / 2], 1 << 20).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut d = TapDecoder::for_encoding("gzip").unwrap();
        assert!(d.push(b"this is not gzip at all").is_err());
    }
}
