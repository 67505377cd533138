-- 0004: federation relationships, the PostgreSQL twin of ../0004_federation.sql: the foreign
-- trust domains this server federates with, and where and how their bundles are fetched (SPIFFE
-- Trust Domain and Bundle spec, section 5). The fetched bundle lives in `bundles`, keyed by the
-- same trust domain.
-- The endpoint SPIFFE ID is required for `https_spiffe` and absent for `https_web`: a named
-- CHECK, so an update of one column cannot leave a row that breaks the rule, and the store can
-- tell this violation from any other.

CREATE TABLE federation_relationships (
    trust_domain TEXT COLLATE "C" PRIMARY KEY,
    bundle_endpoint_url TEXT NOT NULL
        CHECK (bundle_endpoint_url LIKE 'https://%' AND octet_length(bundle_endpoint_url) <= 2048),
    profile TEXT NOT NULL CHECK (profile IN ('https_web', 'https_spiffe')),
    endpoint_spiffe_id TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT federation_endpoint_id_matches_profile
        CHECK ((profile = 'https_spiffe') = (endpoint_spiffe_id IS NOT NULL))
);
