//! Microsoft Graph answers as a hostile or broken Graph could send them: a collection page
//! (`decode_page`), a page inside a `$batch` (`fetch::parse_page`), a `$batch` answer
//! (`decode_batch`), error bodies (`map_error`) and `Retry-After`, then every item through the
//! sync's mapping to rows. The first byte picks how the rest is used: as it is, truncated at
//! several points, or repeated into a huge page. Links that leave Graph must be refused.
#![no_main]
use latchkey_entra::graph::{
    ApiVersion, PageCursor, decode_batch, decode_page, map_error, parse_retry_after,
};
use latchkey_entra::sync::{fetch, map};
use latchkey_entra::{Endpoints, OutboundPolicy};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use serde_json::value::RawValue;
use std::sync::OnceLock;

/// The largest huge page built from one item (Graph pages are a few MiB at most).
const HUGE_PAGE_BYTES: usize = 1 << 20;

fn endpoints() -> &'static [Endpoints; 2] {
    static E: OnceLock<[Endpoints; 2]> = OnceLock::new();
    E.get_or_init(|| {
        [
            Endpoints::global(),
            Endpoints::from_settings(
                Some("http://127.0.0.1:8999"),
                None,
                OutboundPolicy::INSECURE_DEV,
            )
            .expect("the simulated tenant's endpoints"),
        ]
    })
}

fn items(values: &[Value]) {
    for v in values {
        let _ = map::id_of(v);
        let _ = map::user(v);
        let _ = map::user_licenses(v);
        let _ = map::user_on_premises(v);
        let _ = map::manager_of(v);
        let _ = map::group(v);
        let _ = map::group_kind(v);
        let _ = map::group_on_premises(v);
        let _ = map::principal_of(v);
        let _ = map::service_principal(v);
        let _ = map::app_role_ids(v);
        let _ = map::app_role_assignment("00000003-0000-0000-c000-000000000000", v);
        let _ = map::role_definition(v);
        let _ = map::role_grant(v, false);
        let _ = map::role_grant(v, true);
        let _ = map::sku(v);
    }
}

fn body(bytes: &[u8]) {
    for e in endpoints() {
        let first = PageCursor {
            url: format!("{}v1.0/users", e.graph_base()),
            eventual: false,
            permission: None,
        };
        if let Ok(page) = decode_page::<Value>(bytes, &first, e) {
            for link in page.next.iter().chain(page.delta_link.iter()) {
                let url = url::Url::parse(&link.url).expect("an accepted link is a URL");
                assert!(
                    e.is_graph_url(&url),
                    "a link off Graph was accepted: {}",
                    link.url
                );
            }
            items(&page.items);
        }
        if let Ok(raw) = serde_json::from_slice::<Box<RawValue>>(bytes) {
            for version in [ApiVersion::V1, ApiVersion::Beta] {
                if let Ok(p) = fetch::parse_page::<Value>(e, version, Some(&raw)) {
                    items(&p.items);
                }
                if let Ok(p) = fetch::parse_page::<map::GroupMembers>(e, version, Some(&raw)) {
                    for g in &p.items {
                        let _ = (g.current_id(true), g.added().count());
                    }
                }
            }
        }
    }
    if let Ok(answers) = decode_batch(bytes) {
        for a in answers {
            for value in a.headers.values() {
                let _ = parse_retry_after(value);
            }
            let raw = a.body.as_ref().map(|b| b.get().to_string()).unwrap_or_default();
            let err = map_error(
                a.status,
                raw.as_bytes(),
                &http::Method::GET,
                "users",
                Some("$top=1"),
                None,
            );
            let _ = (err.to_string(), err.is_transient(), err.code());
            if let Some(b) = a.value() {
                items(std::slice::from_ref(&b));
            }
        }
    }
    let _ = map_error(
        404,
        bytes,
        &http::Method::PATCH,
        "users/x",
        None,
        Some("User.ReadWrite.All"),
    );
    let _ = parse_retry_after(&String::from_utf8_lossy(bytes));
}

/// A huge page is read once, the way the sync reads it (a long run of the same item is what
/// matters, not every reading of it).
fn huge(page: &[u8]) {
    let e = &endpoints()[0];
    let first = PageCursor {
        url: format!("{}v1.0/users", e.graph_base()),
        eventual: false,
        permission: None,
    };
    // (An item nested close to serde_json's depth limit fails inside the page: not a bug.)
    if let Ok(decoded) = decode_page::<Value>(page, &first, e) {
        assert_eq!(decoded.count, Some(decoded.items.len() as u64));
        items(&decoded.items[..1]);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => body(rest),
        1 => {
            // Truncated answers (a connection cut mid-body).
            for cut in [rest.len() / 4, rest.len() / 2, rest.len().saturating_sub(1)] {
                body(&rest[..cut]);
            }
        }
        _ => {
            // A huge page: the rest is one item, repeated (with a next link at the end).
            let Some((&n, item)) = rest.split_first() else {
                return;
            };
            if item.is_empty() || serde_json::from_slice::<Value>(item).is_err() {
                return;
            }
            let count = ((n as usize + 1) * 200)
                .min(HUGE_PAGE_BYTES / item.len())
                .max(1);
            let mut page = Vec::with_capacity(count * (item.len() + 1) + 128);
            page.extend_from_slice(b"{\"@odata.count\":");
            page.extend_from_slice(count.to_string().as_bytes());
            page.extend_from_slice(b",\"value\":[");
            for i in 0..count {
                if i > 0 {
                    page.push(b',');
                }
                page.extend_from_slice(item);
            }
            page.extend_from_slice(
                b"],\"@odata.nextLink\":\"https://graph.microsoft.com/v1.0/users?$skiptoken=X\"}",
            );
            huge(&page);
        }
    }
});
