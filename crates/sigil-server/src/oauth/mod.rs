//! OAuth 2.0 on the public listener: token exchange (RFC 8693) that turns JWT-SVIDs of this or a
//! federated trust domain and JWTs of configured external OIDC issuers into scoped Sigil
//! credentials, client authentication with SVIDs (draft-ietf-oauth-spiffe-client-auth) and
//! RFC 7523 assertions, introspection (RFC 7662) and revocation (RFC 7009).

pub mod condition;
pub mod mapping;
