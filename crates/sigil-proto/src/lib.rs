//! Generated protocol code: the SPIFFE Workload API (`workload`), Sigil's agent API
//! (`agent::v1`) and its credentials service (`creds::v1`), and the codec the generated services use ([`codec`]). Nothing else lives here.

pub mod codec;

/// The SPIFFE Workload API, package-less as the standard defines it.
#[allow(clippy::all, reason = "generated code")]
#[allow(clippy::pedantic, reason = "generated code")]
pub mod workload {
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}

/// Sigil's agent <-> server API.
pub mod agent {
    /// Version 1.
    #[allow(clippy::all, reason = "generated code")]
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/sigil.agent.v1.rs"));
    }
}

/// Sigil's credentials service, served by the agent on the Workload API socket.
pub mod creds {
    /// Version 1.
    #[allow(clippy::all, reason = "generated code")]
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/sigil.creds.v1.rs"));

        /// Never prints the password.
        impl std::fmt::Debug for Credential {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("Credential")
                    .field("lease_id", &self.lease_id)
                    .field("target", &self.target)
                    .field("role", &self.role)
                    .field("username", &self.username)
                    .field("password", &"<redacted>")
                    .field("expires_at", &self.expires_at)
                    .field("max_expires_at", &self.max_expires_at)
                    .field("database", &self.database)
                    .finish()
            }
        }
    }
}

/// gRPC metadata key the Workload API requires on every call, with value `true`.
pub const WORKLOAD_API_HEADER: &str = "workload.spiffe.io";

/// Most rows one `ReportWorkloadUsage` call may carry (the server refuses more with
/// `InvalidArgument`).
pub const MAX_USAGE_REPORT_ROWS: usize = 1000;
/// Longest `binary_path` of a `WorkloadUsage` row, in bytes.
pub const MAX_USAGE_BINARY_PATH_BYTES: usize = 4096;
