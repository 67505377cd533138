//! A request body that is not valid protobuf reaches the real agent API over mutual TLS and is
//! refused with `INVALID_ARGUMENT` (the caller's fault), not `INTERNAL`. The same call with a
//! well-formed body is decoded and answered first, so the test cannot pass vacuously.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a broken assumption must fail the test loudly"
)]

mod support;

use bytes::{Buf as _, BufMut as _};
use http::uri::PathAndQuery;
use prost::Message as _;
use sigil_keys::PrivateKey;
use support::{TestServer, attest_request};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

/// Sends bytes as they are and hands back what comes, so a test can send a body the generated
/// client could never encode.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

async fn attest_raw(server: &TestServer, body: Vec<u8>) -> Status {
    let mut grpc = tonic::client::Grpc::new(server.channel(None).await.unwrap());
    grpc.ready().await.unwrap();
    let path = PathAndQuery::from_static("/sigil.agent.v1.AgentService/AttestAgent");
    grpc.unary(tonic::Request::new(body), path, RawCodec)
        .await
        .expect_err("attestation with a bogus token must fail")
}

#[tokio::test]
async fn a_request_that_is_not_protobuf_is_invalid_argument() {
    let server = TestServer::start().await;

    // Well-formed: decoded, then refused for its (unknown) join token.
    let key = PrivateKey::generate().unwrap();
    let good = attest_request("not-a-real-token", &key).encode_to_vec();
    let status = attest_raw(&server, good).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // Field 1 (a string) that is not UTF-8, and a length running past the end.
    for bad in [vec![0x0a, 0x02, 0xff, 0xfe], vec![0x0a, 0x05, b'a']] {
        let status = attest_raw(&server, bad.clone()).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}: {status:?}");
        assert!(
            status.message().contains("not valid protobuf"),
            "{status:?}"
        );
    }
    server.stop().await;
}
