mod bitwin;
mod decode;
mod encode;

use std::convert::TryInto;
use std::fmt;
use std::num::TryFromIntError;

use bytes::{Buf, BufMut};

pub use self::bitwin::BitWindow;

pub use self::{
    decode::{Error as HuffmanDecodingError, HpackStringDecode},
    encode::{Error as HuffmanEncodingError, HpackStringEncode},
};

use crate::proto::coding::BufMutExt;
use crate::qpack::prefix_int::{self, Error as IntegerError};

#[derive(Debug, PartialEq)]
pub enum Error {
    UnexpectedEnd,
    Integer(IntegerError),
    HuffmanDecoding(HuffmanDecodingError),
    HuffmanEncoding(HuffmanEncodingError),
    BufSize(TryFromIntError),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnexpectedEnd => write!(f, "unexpected end"),
            Error::Integer(e) => write!(f, "could not parse integer: {}", e),
            Error::HuffmanDecoding(e) => write!(f, "Huffman decode failed: {:?}", e),
            Error::HuffmanEncoding(e) => write!(f, "Huffman encode failed: {:?}", e),
            Error::BufSize(_) => write!(f, "number in buffer wrong size"),
        }
    }
}

pub fn decode<B: Buf>(size: u8, buf: &mut B) -> Result<Vec<u8>, Error> {
    let (flags, len) = prefix_int::decode(size - 1, buf)?;
    let len: usize = len.try_into()?;
    if buf.remaining() < len {
        return Err(Error::UnexpectedEnd);
    }

    let payload = buf.copy_to_bytes(len);
    let value = if flags & 1 == 0 {
        payload.into_iter().collect()
    } else {
        let mut decoded = Vec::new();
        for byte in payload.into_iter().collect::<Vec<u8>>().hpack_decode() {
            decoded.push(byte?);
        }
        decoded
    };
    Ok(value)
}

pub fn encode<B: BufMut>(size: u8, flags: u8, value: &[u8], buf: &mut B) -> Result<(), Error> {
    // holdfast: Huffman-coded only when that saves more than a quarter of
    // the bytes (as nghttp3 does: decoding is the costly side, and every
    // client pays it), and written 32 bits at a time from a table rather
    // than bit by bit. See PATCHES.md.
    let bits: usize = value.iter().map(|&b| encode::CODES[b as usize].1 as usize).sum();
    let huffman_len = bits.div_ceil(8);
    if huffman_len * 4 > value.len() * 3 {
        prefix_int::encode(size - 1, flags << 1, value.len().try_into()?, buf);
        buf.put_slice(value);
        return Ok(());
    }
    prefix_int::encode(size - 1, flags << 1 | 1, huffman_len.try_into()?, buf);
    // Codes are at most 30 bits and fewer than 32 bits wait, so 62 fit.
    let mut acc: u64 = 0;
    let mut pending: u32 = 0;
    for &byte in value {
        let (code, len) = encode::CODES[byte as usize];
        acc = (acc << len) | u64::from(code);
        pending += len;
        if pending >= 32 {
            pending -= 32;
            buf.put_u32((acc >> pending) as u32);
        }
    }
    while pending >= 8 {
        pending -= 8;
        buf.put_u8((acc >> pending) as u8);
    }
    if pending > 0 {
        // Padded with the most significant bits of EOS: all ones.
        buf.put_u8(((acc << (8 - pending)) as u8) | (0xff >> pending));
    }
    Ok(())
}

impl From<HuffmanEncodingError> for Error {
    fn from(error: HuffmanEncodingError) -> Self {
        Error::HuffmanEncoding(error)
    }
}

impl From<IntegerError> for Error {
    fn from(error: IntegerError) -> Self {
        match error {
            IntegerError::UnexpectedEnd => Error::UnexpectedEnd,
            e => Error::Integer(e),
        }
    }
}

impl From<HuffmanDecodingError> for Error {
    fn from(error: HuffmanDecodingError) -> Self {
        Error::HuffmanDecoding(error)
    }
}

impl From<TryFromIntError> for Error {
    fn from(error: TryFromIntError) -> Self {
        Error::BufSize(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assert_matches::assert_matches;
    use std::io::Cursor;

    #[test]
    fn codec_6() {
        let mut buf = Vec::new();
        encode(6, 0b01, b"name without ref", &mut buf).unwrap();
        let mut read = Cursor::new(&buf);
        assert_eq!(
            &buf,
            &[
                0b0110_1100,
                168,
                116,
                149,
                79,
                6,
                76,
                231,
                181,
                42,
                88,
                89,
                127
            ]
        );
        assert_eq!(decode(6, &mut read).unwrap(), b"name without ref");
    }

    #[test]
    fn codec_8() {
        let mut buf = Vec::new();
        encode(8, 0b01, b"name with ref", &mut buf).unwrap();
        let mut read = Cursor::new(&buf);
        // holdfast: Huffman would save 3 of 13 bytes, under a quarter: raw.
        let mut raw = vec![0b0000_1101];
        raw.extend_from_slice(b"name with ref");
        assert_eq!(&buf, &raw);
        assert_eq!(decode(8, &mut read).unwrap(), b"name with ref");
    }

    #[test]
    fn codec_8_empty() {
        let mut buf = Vec::new();
        encode(8, 0b01, b"", &mut buf).unwrap();
        let mut read = Cursor::new(&buf);
        assert_eq!(&buf, &[0b1000_0000]);
        assert_eq!(decode(8, &mut read).unwrap(), b"");
    }

    #[test]
    fn huffman_when_shorter_and_every_string_round_trips() {
        let mut strings: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b; 7]).collect();
        strings.push((0..=255u8).collect());
        strings.push(b"public, max-age=31536000, immutable".to_vec());
        strings.push(b"holdfast; hit; ttl=31535999".to_vec());
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..200 {
            strings.push((0..len).map(|_| { seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17; (seed % 96 + 32) as u8 }).collect());
        }
        for s in strings {
            let mut buf = Vec::new();
            encode(8, 0, &s, &mut buf).unwrap();
            let huffman = Vec::from(&s[..]).hpack_encode().unwrap();
            if huffman.len() * 4 <= s.len() * 3 {
                assert_eq!(buf[0] & 0x80, 0x80, "{s:?}");
                assert!(buf.ends_with(&huffman), "{s:?}");
            } else {
                assert_eq!(buf[0] & 0x80, 0, "{s:?}");
            }
            assert_eq!(decode(8, &mut Cursor::new(&buf)).unwrap(), s);
        }
    }

    #[test]
    fn decode_non_huffman() {
        let buf = vec![0b0100_0011, b'b', b'a', b'r'];
        let mut read = Cursor::new(&buf);
        assert_eq!(decode(6, &mut read).unwrap(), b"bar");
    }

    #[test]
    fn decode_too_short() {
        let buf = vec![0b0100_0011, b'b', b'a'];
        let mut read = Cursor::new(&buf);
        assert_matches!(decode(6, &mut read), Err(Error::UnexpectedEnd));
    }
}
