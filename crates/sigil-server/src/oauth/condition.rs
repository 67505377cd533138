//! Conditions over attributes (placeholder until written).
