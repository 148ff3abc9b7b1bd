//! Connector settings: the Settings form (urlencoded) and the API's JSON `settings`, through
//! the product's parsing and `latchkey_entra::onboarding::validate`. Accepted settings must
//! survive storage and yield endpoints, tenant and consent URL.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        latchkey_web::fuzzing::settings_form(rest);
    } else {
        latchkey_web::fuzzing::settings_json(rest);
    }
});
