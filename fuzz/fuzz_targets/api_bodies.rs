//! API request bodies (the first byte picks the endpoint, see `API_BODIES`) through the API's
//! JSON extractor and the validation that needs no database: refusals are 4xx, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    latchkey_web::fuzzing::api_body(which, body);
});
