//! The gRPC codec of every generated service: prost encoding, and a decoder that reports a
//! message which is not valid protobuf as `INVALID_ARGUMENT` (the caller sent bad input) rather
//! than prost's default `INTERNAL` (which would claim the server failed).
//!
//! The same decoder serves clients too: a response that does not decode is reported with the
//! same code and message, which only Sigil's own clients (the agent) ever see.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

/// Initial size of the buffer each stream encodes into and decodes from, in bytes. Small on
/// purpose: a server holds one encode buffer per open stream for the stream's life, so with
/// thousands of agents on sync streams tonic's default (8 KiB) would be megabytes of mostly
/// empty buffers. A larger message grows the buffer as it needs.
pub const CODEC_BUFFER_BYTES: usize = 1024;
/// Encoded bytes after which the encoder hands what it holds to the transport instead of
/// encoding more ready messages into the same buffer; bounds how far a stream's buffer grows
/// when several messages are queued (tonic's default is 32 KiB).
pub const CODEC_YIELD_THRESHOLD_BYTES: usize = 4 * 1024;

/// The buffer settings of every encoder and decoder of this codec.
fn buffer_settings() -> BufferSettings {
    BufferSettings::new(CODEC_BUFFER_BYTES, CODEC_YIELD_THRESHOLD_BYTES)
}

/// `application/grpc+proto` through prost, with undecodable messages refused as
/// `INVALID_ARGUMENT`. Named by `build.rs` as the codec of every service.
#[derive(Debug, Clone)]
pub struct StrictProstCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for StrictProstCodec<T, U> {
    fn default() -> Self {
        Self { _pd: PhantomData }
    }
}

impl<T, U> Codec for StrictProstCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = StrictProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(buffer_settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        StrictProstDecoder { _pd: PhantomData }
    }
}

/// Decodes `U`; a message that does not decode is `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct StrictProstDecoder<U> {
    _pd: PhantomData<U>,
}

impl<U: Message + Default> Decoder for StrictProstDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        decode_message(buf).map(Some)
    }

    fn buffer_settings(&self) -> BufferSettings {
        buffer_settings()
    }
}

/// `U` from `buf`, or `INVALID_ARGUMENT` naming what prost could not decode.
fn decode_message<U: Message + Default>(buf: impl prost::bytes::Buf) -> Result<U, Status> {
    U::decode(buf)
        .map_err(|e| Status::invalid_argument(format!("message is not valid protobuf: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::v1::AttestAgentRequest;

    #[test]
    fn encoder_and_decoder_use_the_small_buffers() {
        use tonic::codec::Encoder as _;
        // `BufferSettings` has no accessors; its `Debug` shows both sizes.
        let want = format!("{:?}", buffer_settings());
        assert!(want.contains("buffer_size: 1024"), "{want}");
        assert!(want.contains("yield_threshold: 4096"), "{want}");
        let mut codec = StrictProstCodec::<AttestAgentRequest, AttestAgentRequest>::default();
        assert_eq!(format!("{:?}", codec.encoder().buffer_settings()), want);
        assert_eq!(format!("{:?}", codec.decoder().buffer_settings()), want);
    }

    #[test]
    fn a_valid_message_decodes() {
        let sent = AttestAgentRequest {
            attestation_type: "join_token".into(),
            ..Default::default()
        };
        let bytes = sent.encode_to_vec();
        let got: AttestAgentRequest = decode_message(bytes.as_slice()).unwrap();
        assert_eq!(got, sent);
    }

    #[test]
    fn bytes_that_are_not_the_message_are_invalid_argument() {
        // Field 1 (a string) with a length running past the end, and a string that is not UTF-8.
        for bad in [&[0x0a, 0x05, b'a'][..], &[0x0a, 0x02, 0xff, 0xfe][..]] {
            let err = decode_message::<AttestAgentRequest>(bad).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad:?}");
            assert!(err.message().starts_with("message is not valid protobuf"));
        }
    }
}
