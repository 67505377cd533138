//! Admin commands (`sigil entry|agent list/show/ban/evict|token|bundle|authority|federation|svid
//! revoke/revocations|policy`): clap arguments, calls to the server's admin API over its Unix
//! socket, and output as aligned text or the API's JSON. `sigil policy` also checks, tests and
//! decides with a policy directory locally.

pub mod agent;
pub mod audit;
pub mod authority;
pub mod bundle;
mod client;
pub mod credential_targets;
pub mod entry;
pub mod federation;
pub mod inventory;
pub mod leases;
mod output;
pub mod policy;
pub mod svid;
pub mod token;

use std::path::PathBuf;

use clap::Args;

use crate::OutputFormat;

/// Where `sigil dev` puts the admin socket, relative to the working directory.
pub const DEFAULT_ADMIN_SOCKET: &str = ".sigil/admin.sock";

/// How to reach the admin API.
#[derive(Debug, Clone, Args)]
pub struct AdminConnection {
    /// The server's admin API socket.
    #[arg(
        long,
        value_name = "PATH",
        env = "SIGIL_ADMIN_SOCKET",
        default_value = DEFAULT_ADMIN_SOCKET
    )]
    pub admin_socket: PathBuf,
}

/// `--output text|json`.
#[derive(Debug, Clone, Copy, Args)]
pub struct OutputArg {
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}
