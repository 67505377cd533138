//! Attribute mapping and SPIFFE ID templates (placeholder until written).
