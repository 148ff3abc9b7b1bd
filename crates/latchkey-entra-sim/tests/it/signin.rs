//! Who signs in at `authorize` (sign-in page, `login_hint`), and the test-only token tools:
//! `/_sim/sign` and `/_sim/id-token-tamper`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::T;

fn authorize_url(t: &T, extra: &[(&str, &str)]) -> String {
    let lk = t.sim.latchkey_app();
    let mut u = url::Url::parse(&format!(
        "{}/organizations/oauth2/v2.0/authorize",
        t.sim.base_url()
    ))
    .unwrap();
    u.query_pairs_mut()
        .append_pair("client_id", &lk.client_id.to_string())
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", &lk.redirect_uris[0])
        .append_pair("scope", "openid profile")
        .append_pair("state", "s1")
        .append_pair("nonce", "n1");
    for (k, v) in extra {
        u.query_pairs_mut().append_pair(k, v);
    }
    u.to_string()
}

fn claims_of(token: &str) -> Value {
    serde_json::from_slice(&B64.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

async fn id_token_for(t: &T, upn: &str) -> Value {
    let r = t
        .http
        .get(authorize_url(t, &[("login_hint", upn)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let loc = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let code = loc
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .to_string();
    let lk = t.sim.latchkey_app();
    let v: Value = t
        .http
        .post(t.url("/organizations/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", &lk.client_id.to_string()),
            ("client_secret", &lk.client_secret),
            ("code", &code),
            ("redirect_uri", &lk.redirect_uris[0]),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    json!({"token": v["id_token"], "claims": claims_of(v["id_token"].as_str().unwrap())})
}

#[tokio::test]
async fn the_person_who_signs_in_is_chosen_on_the_sign_in_page_or_by_login_hint() {
    let t = T::new().await;
    let users = t.sim.truth_users();
    // prompt=select_account without a hint: Microsoft's sign-in page, carrying the request.
    let r = t
        .http
        .get(authorize_url(&t, &[("prompt", "select_account")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"i0116\"") && html.contains("id=\"idSIButton9\""));
    assert!(html.contains("name=\"nonce\" value=\"n1\""));

    let person = users.iter().skip(2).find(|u| u.account_enabled).unwrap();
    let got = id_token_for(&t, &person.user_principal_name.to_uppercase()).await;
    let c = &got["claims"];
    assert_eq!(c["oid"], person.id.to_string());
    assert_eq!(c["preferred_username"], person.user_principal_name);
    assert_eq!(c["tid"], t.sim.tenant_id().to_string());
    assert_eq!(c["nonce"], "n1");

    for (hint, code) in [
        ("nobody@nowhere.example".to_string(), "AADSTS50034"),
        (
            users
                .iter()
                .find(|u| !u.account_enabled)
                .unwrap()
                .user_principal_name
                .clone(),
            "AADSTS50057",
        ),
    ] {
        let r = t
            .http
            .get(authorize_url(&t, &[("login_hint", &hint)]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{hint}");
        assert!(r.text().await.unwrap().contains(code), "{hint}");
    }

    // Without a hint or prompt: the tenant's admin, as before.
    let r = t.http.get(authorize_url(&t, &[])).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
}

#[tokio::test]
async fn test_tools_sign_arbitrary_claims_and_alter_the_next_id_token() {
    let t = T::new().await;
    let sign = |alg: &'static str| {
        let http = t.http.clone();
        let url = t.url("/_sim/sign");
        async move {
            let v: Value = http
                .post(url)
                .json(&json!({"claims": {"aud": "x", "tid": "y"}, "alg": alg}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["token"].as_str().unwrap().to_string()
        }
    };
    let header = |tok: &str| -> Value {
        serde_json::from_slice(&B64.decode(tok.split('.').next().unwrap()).unwrap()).unwrap()
    };
    let rs = sign("RS256").await;
    assert_eq!(header(&rs)["alg"], "RS256");
    assert_eq!(claims_of(&rs)["aud"], "x");
    let none = sign("NONE").await;
    assert_eq!(header(&none)["alg"], "none");
    assert!(none.ends_with('.'));
    assert_eq!(header(&sign("HS256_PUBLIC_KEY").await)["alg"], "HS256");
    let bad = sign("BAD_SIGNATURE").await;
    assert_ne!(bad.rsplit('.').next(), rs.rsplit('.').next());
    assert_eq!(
        header(&sign("UNKNOWN_KID").await)["kid"],
        "not-a-published-key"
    );

    let upn = t.sim.truth_users()[3].user_principal_name.clone();
    let r = t
        .http
        .put(t.url("/_sim/id-token-tamper"))
        .json(&json!({"claims": {"aud": "someone-else", "nonce": null}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let altered = id_token_for(&t, &upn).await;
    assert_eq!(altered["claims"]["aud"], "someone-else");
    assert!(altered["claims"].get("nonce").is_none());
    // Only the next one.
    let normal = id_token_for(&t, &upn).await;
    assert_eq!(
        normal["claims"]["aud"],
        t.sim.latchkey_app().client_id.to_string()
    );
}
