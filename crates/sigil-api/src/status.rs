//! `GET /api/v1/health`.

use serde::{Deserialize, Serialize};

/// The health answer: `{"status": "ok", "trust_domain": "example.org"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Always `ok` when the server answers.
    pub status: String,
    /// The trust domain the server is the authority of.
    pub trust_domain: String,
}
