//! The `sigil` binary: clap CLI and dispatch. (Skeleton: the admin-API helper fills in the tree.)

mod agent_cmd;
mod dev;
mod server_cmd;
mod workload_cmd;

/// `--output` of list/show/fetch commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

fn main() {}
