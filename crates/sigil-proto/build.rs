//! Compiles the .proto files with protox (pure Rust, so no `protoc` is needed on the machine)
//! and generates prost messages and tonic clients and servers.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/workload.proto",
        "proto/creds.proto",
        "proto/agent.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Undecodable requests are the caller's error (INVALID_ARGUMENT), not the server's.
        .codec_path("crate::codec::StrictProstCodec")
        // Carries a database password: its Debug is written by hand, redacted (src/lib.rs).
        .skip_debug([".sigil.creds.v1.Credential"])
        .compile_fds(fds)?;
    Ok(())
}
