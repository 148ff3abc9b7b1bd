//! The query strings of the admin-consent callback and the Sign in with Microsoft callback:
//! what the handlers read from them before and after the stored `state` is checked.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let query = String::from_utf8_lossy(data);
    latchkey_web::fuzzing::consent_callback(&query);
    latchkey_web::fuzzing::signin_callback(&query);
});
