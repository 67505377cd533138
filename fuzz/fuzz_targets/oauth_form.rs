//! Fuzzes the token endpoint's form body (`sigil_server::oauth::form::Form::parse`): no input may
//! panic, an accepted body holds at most `MAX_PARAMETERS` parameters and no repeated
//! single-valued one.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_server::oauth::form::{Form, MAX_PARAMETERS};

fuzz_target!(|data: &[u8]| {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    let Ok(form) = Form::parse(&headers, data) else {
        return;
    };
    for name in ["grant_type", "subject_token", "client_assertion", "scope"] {
        let _ = form.get(name);
    }
    assert!(form.all("audience").count() <= MAX_PARAMETERS);
});
