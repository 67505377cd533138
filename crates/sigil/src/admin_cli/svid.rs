//! `sigil svid revoke|revocations`: revoking one SVID this server issued (an X509-SVID by serial,
//! a JWT-SVID by `jti`) until it expires, and listing the revocations still in force. The server
//! normalises the serial and decides whether the credential can be revoked; a refusal is its
//! one-line reason.

use clap::{ArgGroup, Args};
use sigil_api::{Revocation, RevocationList, RevokeRequest, paths};

use super::client::AdminClient;
use super::output::{Block, emit, emit_json, format_time, render_found};
use super::{AdminConnection, OutputArg};
use crate::OutputFormat;

/// `sigil svid revoke --serial S | --jti J [--reason TEXT]`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("credential").required(true).args(["serial", "jti"])))]
pub struct RevokeArgs {
    /// Serial number of the X509-SVID in hex, as openssl prints it (`4A:1B:…` or `4A1B…`).
    #[arg(long, value_name = "HEX")]
    pub serial: Option<String>,
    /// `jti` claim of the JWT-SVID (may begin with `-`: Sigil's are base64url).
    #[arg(long, value_name = "JTI", allow_hyphen_values = true)]
    pub jti: Option<String>,
    /// Why, for the record (one line).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

/// `sigil svid revocations`.
#[derive(Debug, Args)]
pub struct RevocationsArgs {
    #[command(flatten)]
    pub out: OutputArg,
    #[command(flatten)]
    pub conn: AdminConnection,
}

/// `sigil svid revoke`: the server puts the credential on the deny-list until it expires.
pub async fn revoke(args: RevokeArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.conn.admin_socket);
    let request = RevokeRequest {
        serial: args.serial,
        jti: args.jti,
        reason: args.reason,
    };
    let revocation: Revocation = client.post(paths::REVOCATIONS, &request).await?;
    match args.out.output {
        OutputFormat::Json => emit_json(&revocation),
        OutputFormat::Text => emit(&revocation_block(&revocation).render()),
    }
}

/// `sigil svid revocations`: every revocation whose credential has not expired.
pub async fn revocations(args: RevocationsArgs) -> anyhow::Result<()> {
    let client = AdminClient::new(&args.conn.admin_socket);
    let list: RevocationList = client.get(paths::REVOCATIONS).await?;
    match args.out.output {
        OutputFormat::Json => emit_json(&list),
        OutputFormat::Text => {
            let blocks: Vec<Block> = list.revocations.iter().map(revocation_block).collect();
            emit(&render_found(
                list.revocations.len(),
                "revocation",
                "revocations",
                &blocks,
            ))
        }
    }
}

fn revocation_block(r: &Revocation) -> Block {
    let (kind, id_key) = match r.kind.as_str() {
        "x509_svid" => ("X509-SVID", "Serial number"),
        "jwt_svid" => ("JWT-SVID", "JWT ID"),
        _ => (r.kind.as_str(), "ID"),
    };
    Block::default()
        .line("Kind", kind)
        .line(id_key, r.id.clone())
        .line("SPIFFE ID", r.spiffe_id.clone())
        .line("Authority ID", r.authority_id.clone())
        .optional("Reason", &r.reason)
        .line("Revoked at", format_time(r.revoked_at))
        .line("Expiration time", format_time(r.expires_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revocation(kind: &str, reason: &str) -> Revocation {
        Revocation {
            kind: kind.into(),
            id: "4a1b".into(),
            spiffe_id: "spiffe://example.org/web".into(),
            authority_id: "ab12".into(),
            reason: reason.into(),
            revoked_at: 0,
            expires_at: 3600,
        }
    }

    #[test]
    fn blocks_name_the_credential_by_its_kind_and_show_a_reason_only_when_given() {
        assert_eq!(
            revocation_block(&revocation("x509_svid", "key leaked")).render(),
            "Kind            : X509-SVID\nSerial number   : 4a1b\n\
             SPIFFE ID       : spiffe://example.org/web\nAuthority ID    : ab12\n\
             Reason          : key leaked\nRevoked at      : 1970-01-01T00:00:00Z\n\
             Expiration time : 1970-01-01T01:00:00Z\n"
        );
        let jwt = revocation_block(&revocation("jwt_svid", "")).render();
        assert!(jwt.starts_with("Kind            : JWT-SVID\nJWT ID          : 4a1b\n"));
        assert!(!jwt.contains("Reason"), "{jwt}");
    }
}
