//! The framing of a publish request body, parsed incrementally.
//!
//! `cargo publish` sends `u32 LE metadata length | metadata JSON | u32 LE crate length | .crate`
//! (PROTOCOL.md §4.2). [`PublishFraming`] is fed the body in whatever chunks it arrives in and
//! yields [`Frame`]s: the whole metadata (capped by [`FramingLimits::max_metadata`]), the
//! declared crate length (capped by [`FramingLimits::max_crate`], checked before a byte of the
//! crate is read), then the crate bytes as borrowed slices of the input, so memory stays
//! bounded by the metadata cap whatever the crate's size. The result is the same however the
//! body is split.

use std::fmt;

/// The largest parts a body may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramingLimits {
    /// The largest metadata JSON, in bytes.
    pub max_metadata: u32,
    /// The largest `.crate`, in bytes.
    pub max_crate: u64,
}

/// A part of the body, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The four bytes of the metadata length.
    MetadataLength,
    /// The metadata JSON.
    Metadata,
    /// The four bytes of the crate length.
    CrateLength,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::MetadataLength => "metadata length",
            Part::Metadata => "metadata",
            Part::CrateLength => "tarball length",
        })
    }
}

/// Why a body is not a well-framed publish request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// The body ended inside a length or the metadata.
    #[error("the body ends inside the {0}")]
    Truncated(Part),
    /// The body ended inside the crate.
    #[error("the tarball is {got} bytes, shorter than the {declared} bytes declared")]
    TruncatedCrate {
        /// Crate bytes received.
        got: u64,
        /// The declared crate length.
        declared: u64,
    },
    /// The declared metadata length is over the limit.
    #[error("JSON metadata blob too large (max {max} bytes)")]
    MetadataTooLarge {
        /// The declared length.
        declared: u32,
        /// The limit.
        max: u32,
    },
    /// The declared crate length is over the limit.
    #[error("max upload size is: {max}")]
    CrateTooLarge {
        /// The declared length.
        declared: u64,
        /// The limit.
        max: u64,
    },
    /// Bytes follow the crate.
    #[error("unexpected bytes after the tarball")]
    TrailingBytes,
}

impl FramingError {
    /// Whether the error is a declared part over its limit (HTTP 413) rather than a malformed
    /// body (HTTP 400).
    pub fn is_too_large(&self) -> bool {
        matches!(
            self,
            FramingError::MetadataTooLarge { .. } | FramingError::CrateTooLarge { .. }
        )
    }
}

/// What the framing yields, in this order: one `Metadata`, one `CrateLength`, then `CrateData`
/// until the declared length is reached.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// The complete metadata JSON (not yet parsed).
    Metadata(Vec<u8>),
    /// The declared crate length (within the limit).
    CrateLength(u64),
    /// The next crate bytes, a slice of the input.
    CrateData(&'a [u8]),
}

#[derive(Debug)]
enum State {
    /// Reading a little-endian `u32`: the bytes so far and how many.
    Length(Part, [u8; 4], usize),
    Metadata {
        declared: usize,
        buf: Vec<u8>,
    },
    Crate {
        declared: u64,
        left: u64,
    },
    Done,
    Failed(FramingError),
}

/// The incremental parser of a publish body.
#[derive(Debug)]
pub struct PublishFraming {
    limits: FramingLimits,
    state: State,
}

impl PublishFraming {
    /// A parser at the start of a body.
    pub fn new(limits: FramingLimits) -> PublishFraming {
        PublishFraming {
            limits,
            state: State::Length(Part::MetadataLength, [0; 4], 0),
        }
    }

    /// Consumes bytes from the front of `input` and returns the next frame, or `None` once
    /// `input` is used up without completing one (feed the next chunk then). An error is
    /// final: every later call returns it again.
    pub fn next_frame<'a>(
        &mut self,
        input: &mut &'a [u8],
    ) -> Result<Option<Frame<'a>>, FramingError> {
        let result = self.step(input);
        if let Err(error) = &result {
            self.state = State::Failed(error.clone());
        }
        result
    }

    fn step<'a>(&mut self, input: &mut &'a [u8]) -> Result<Option<Frame<'a>>, FramingError> {
        loop {
            match &mut self.state {
                State::Length(part, bytes, have) => {
                    let take = (4 - *have).min(input.len());
                    bytes[*have..*have + take].copy_from_slice(&input[..take]);
                    *have += take;
                    *input = &input[take..];
                    if *have < 4 {
                        return Ok(None);
                    }
                    let len = u32::from_le_bytes(*bytes);
                    match part {
                        Part::CrateLength => return self.crate_length(len).map(Some),
                        _ => self.metadata_length(len)?,
                    }
                }
                State::Metadata { declared, buf } => {
                    let take = (*declared - buf.len()).min(input.len());
                    buf.extend_from_slice(&input[..take]);
                    *input = &input[take..];
                    if buf.len() < *declared {
                        return Ok(None);
                    }
                    let json = std::mem::take(buf);
                    self.state = State::Length(Part::CrateLength, [0; 4], 0);
                    return Ok(Some(Frame::Metadata(json)));
                }
                State::Crate { left: 0, .. } => self.state = State::Done,
                State::Crate { left, .. } => {
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(input.len());
                    let (data, rest) = input.split_at(take);
                    *input = rest;
                    *left -= take as u64;
                    return Ok(Some(Frame::CrateData(data)));
                }
                State::Done if input.is_empty() => return Ok(None),
                State::Done => return Err(FramingError::TrailingBytes),
                State::Failed(error) => return Err(error.clone()),
            }
        }
    }

    fn metadata_length(&mut self, len: u32) -> Result<(), FramingError> {
        if len > self.limits.max_metadata {
            return Err(FramingError::MetadataTooLarge {
                declared: len,
                max: self.limits.max_metadata,
            });
        }
        // Grows as bytes arrive: a declared length reserves nothing.
        self.state = State::Metadata {
            declared: len as usize,
            buf: Vec::new(),
        };
        Ok(())
    }

    fn crate_length<'a>(&mut self, len: u32) -> Result<Frame<'a>, FramingError> {
        let declared = u64::from(len);
        if declared > self.limits.max_crate {
            return Err(FramingError::CrateTooLarge {
                declared,
                max: self.limits.max_crate,
            });
        }
        self.state = State::Crate {
            declared,
            left: declared,
        };
        Ok(Frame::CrateLength(declared))
    }

    /// Whether the whole body has been read: every declared byte, nothing after.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Done | State::Crate { left: 0, .. })
    }

    /// The body ended: `Ok` if the framing is complete, else what was cut short.
    pub fn finish(&self) -> Result<(), FramingError> {
        match &self.state {
            State::Done | State::Crate { left: 0, .. } => Ok(()),
            State::Length(part, ..) => Err(FramingError::Truncated(*part)),
            State::Metadata { .. } => Err(FramingError::Truncated(Part::Metadata)),
            State::Crate { declared, left } => Err(FramingError::TruncatedCrate {
                got: declared - left,
                declared: *declared,
            }),
            State::Failed(error) => Err(error.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const LIMITS: FramingLimits = FramingLimits {
        max_metadata: 64,
        max_crate: 256,
    };

    /// What a whole body amounts to.
    #[derive(Debug, PartialEq, Eq)]
    struct Parsed {
        metadata: Vec<u8>,
        declared: u64,
        krate: Vec<u8>,
    }

    /// Feeds `body` split at `cuts` and collects the frames, checking their order.
    fn feed(body: &[u8], cuts: &[usize]) -> Result<Parsed, FramingError> {
        let mut framing = PublishFraming::new(LIMITS);
        let mut parsed = Parsed {
            metadata: Vec::new(),
            declared: 0,
            krate: Vec::new(),
        };
        let (mut metadata_seen, mut length_seen) = (false, false);
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
        bounds.push(0);
        bounds.push(body.len());
        bounds.sort_unstable();
        for pair in bounds.windows(2) {
            let mut input = &body[pair[0]..pair[1]];
            while let Some(frame) = framing.next_frame(&mut input)? {
                match frame {
                    Frame::Metadata(json) => {
                        assert!(!metadata_seen && !length_seen);
                        metadata_seen = true;
                        parsed.metadata = json;
                    }
                    Frame::CrateLength(len) => {
                        assert!(metadata_seen && !length_seen);
                        length_seen = true;
                        parsed.declared = len;
                    }
                    Frame::CrateData(data) => {
                        assert!(length_seen && !data.is_empty());
                        parsed.krate.extend_from_slice(data);
                    }
                }
            }
            assert!(input.is_empty(), "a chunk was not used up");
        }
        framing.finish()?;
        assert!(framing.is_complete());
        Ok(parsed)
    }

    /// The same, written the obvious way over the whole body.
    fn reference(body: &[u8]) -> Result<Parsed, FramingError> {
        let u32_at = |at: usize, part: Part| -> Result<u32, FramingError> {
            body.get(at..at + 4)
                .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
                .ok_or(FramingError::Truncated(part))
        };
        let json_len = u32_at(0, Part::MetadataLength)?;
        if json_len > LIMITS.max_metadata {
            return Err(FramingError::MetadataTooLarge {
                declared: json_len,
                max: LIMITS.max_metadata,
            });
        }
        let json_end = 4 + json_len as usize;
        let metadata = body
            .get(4..json_end)
            .ok_or(FramingError::Truncated(Part::Metadata))?
            .to_vec();
        let declared = u64::from(u32_at(json_end, Part::CrateLength)?);
        if declared > LIMITS.max_crate {
            return Err(FramingError::CrateTooLarge {
                declared,
                max: LIMITS.max_crate,
            });
        }
        let rest = &body[json_end + 4..];
        if (rest.len() as u64) < declared {
            return Err(FramingError::TruncatedCrate {
                got: rest.len() as u64,
                declared,
            });
        }
        if rest.len() as u64 > declared {
            return Err(FramingError::TrailingBytes);
        }
        Ok(Parsed {
            metadata,
            declared,
            krate: rest.to_vec(),
        })
    }

    fn body(json: &[u8], krate: &[u8]) -> Vec<u8> {
        let mut body = (json.len() as u32).to_le_bytes().to_vec();
        body.extend_from_slice(json);
        body.extend_from_slice(&(krate.len() as u32).to_le_bytes());
        body.extend_from_slice(krate);
        body
    }

    /// Bodies of every shape: well framed, cut anywhere, with trailing bytes, with lengths
    /// over the limits, and arbitrary bytes.
    fn bodies() -> impl Strategy<Value = Vec<u8>> {
        let framed = (
            proptest::collection::vec(any::<u8>(), 0..80),
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(json, krate)| body(&json, &krate));
        prop_oneof![
            framed.clone(),
            (framed.clone(), any::<prop::sample::Index>()).prop_map(|(b, at)| {
                let cut = at.index(b.len() + 1);
                b[..cut].to_vec()
            }),
            (framed, proptest::collection::vec(any::<u8>(), 1..10)).prop_map(|(mut b, extra)| {
                b.extend(extra);
                b
            }),
            (
                any::<u32>(),
                any::<u32>(),
                proptest::collection::vec(any::<u8>(), 0..100)
            )
                .prop_map(|(json_len, crate_len, rest)| {
                    let mut b = json_len.to_le_bytes().to_vec();
                    b.extend_from_slice(&rest);
                    b.extend_from_slice(&crate_len.to_le_bytes());
                    b
                }),
            proptest::collection::vec(any::<u8>(), 0..400),
        ]
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_reference_result(
            body in bodies(),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            prop_assert_eq!(feed(&body, &cuts), reference(&body));
        }

        #[test]
        fn byte_by_byte_is_the_same(body in bodies()) {
            let cuts: Vec<usize> = (0..body.len()).collect();
            prop_assert_eq!(feed(&body, &cuts), feed(&body, &[]));
        }
    }

    #[test]
    fn errors_name_the_part() {
        let good = body(b"{}", b"crate");
        assert_eq!(
            feed(&good, &[3, 7]),
            Ok(Parsed {
                metadata: b"{}".to_vec(),
                declared: 5,
                krate: b"crate".to_vec()
            })
        );
        assert_eq!(
            feed(&good[..2], &[]),
            Err(FramingError::Truncated(Part::MetadataLength))
        );
        assert_eq!(
            feed(&good[..5], &[]),
            Err(FramingError::Truncated(Part::Metadata))
        );
        assert_eq!(
            feed(&good[..8], &[]),
            Err(FramingError::Truncated(Part::CrateLength))
        );
        assert_eq!(
            feed(&good[..good.len() - 2], &[]),
            Err(FramingError::TruncatedCrate {
                got: 3,
                declared: 5
            })
        );
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(feed(&trailing, &[]), Err(FramingError::TrailingBytes));
        let huge = u32::MAX.to_le_bytes();
        let err = feed(&huge, &[]).unwrap_err();
        assert!(err.is_too_large());
        assert_eq!(
            err.to_string(),
            "JSON metadata blob too large (max 64 bytes)"
        );
        let mut big_crate = body(b"{}", b"");
        big_crate[6..10].copy_from_slice(&257u32.to_le_bytes());
        assert_eq!(
            feed(&big_crate, &[]),
            Err(FramingError::CrateTooLarge {
                declared: 257,
                max: 256
            })
        );
        // Empty parts are fine.
        assert!(feed(&body(b"", b""), &[]).is_ok());
    }

    #[test]
    fn errors_are_final() {
        let mut framing = PublishFraming::new(LIMITS);
        let mut input: &[u8] = &u32::MAX.to_le_bytes();
        assert!(framing.next_frame(&mut input).is_err());
        let mut more: &[u8] = b"{}";
        assert!(framing.next_frame(&mut more).is_err());
        assert!(framing.finish().is_err());
    }
}
