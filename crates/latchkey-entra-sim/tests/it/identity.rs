//! Identity platform: tokens, errors, discovery, authorization code + PKCE, admin consent.

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use latchkey_entra_sim::{ConsentOutcome, SimConfig};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::Digest;

use crate::helpers::{T, client};

async fn jwks_key(t: &T, kid: &str) -> DecodingKey {
    let jwks: Value = t
        .http
        .get(t.url(&format!("/{}/discovery/v2.0/keys", t.sim.tenant_id())))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let k = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap();
    DecodingKey::from_rsa_components(k["n"].as_str().unwrap(), k["e"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn client_credentials_token_is_rs256_and_carries_roles() {
    let t = T::new().await;
    let header = decode_header(&t.token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    let key = jwks_key(&t, header.kid.as_deref().unwrap()).await;
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&["https://graph.microsoft.com"]);
    let data = decode::<Value>(&t.token, &key, &v).unwrap();
    let c = data.claims;
    assert_eq!(c["tid"], t.sim.tenant_id().to_string());
    assert_eq!(c["appid"], t.sim.customer_app().client_id.to_string());
    let roles: Vec<&str> = c["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(roles.contains(&"GroupMember.ReadWrite.All") && roles.contains(&"User.Read.All"));
    assert!(c["exp"].as_i64().unwrap() > c["iat"].as_i64().unwrap());
}

#[tokio::test]
async fn token_errors_have_entra_bodies() {
    let t = T::new().await;
    let app = t.sim.customer_app();
    let id = app.client_id.to_string();
    let scope = t.sim.graph_scope();
    type Case<'a> = (Vec<(&'a str, &'a str)>, StatusCode, &'a str, i64);
    let cases: Vec<Case> = vec![
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", "wrong"),
                ("scope", &scope),
            ],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("scope", &scope),
            ],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "11111111-1111-1111-1111-111111111111"),
                ("client_secret", "x"),
                ("scope", &scope),
            ],
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &app.client_secret),
                ("scope", "https://graph.microsoft.com/User.Read.All"),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &app.client_secret),
                ("scope", "openid https://graph.microsoft.com/.default"),
            ],
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            70011,
        ),
    ];
    for (form, status, error, code) in cases {
        let (s, v) = t.token_response(&form).await;
        assert_eq!(s, status, "{v}");
        assert_eq!(v["error"], error);
        assert_eq!(v["error_codes"][0], code);
        assert!(
            v["error_description"]
                .as_str()
                .unwrap()
                .starts_with(&format!("AADSTS{code}:")),
            "{v}"
        );
        assert!(
            v["trace_id"].is_string()
                && v["correlation_id"].is_string()
                && v["timestamp"].is_string()
        );
    }
    // Unknown tenant.
    let r = t
        .http
        .post(t.url("/00000000-1111-2222-3333-444444444444/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &app.client_secret),
            ("scope", &scope),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error_codes"][0], 90002);
    // Expired secret.
    t.sim.update_faults(|f| f.expired_secret = true);
    let (s, v) = t
        .token_response(&[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &app.client_secret),
            ("scope", &scope),
        ])
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error_codes"][0], 7000222);
    // HTTP Basic client authentication and the domain name as tenant.
    t.sim.update_faults(|f| f.expired_secret = false);
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{}", app.client_secret));
    let r = t
        .http
        .post(t.url(&format!("/{}/oauth2/v2.0/token", t.sim.domain())))
        .header("Authorization", format!("Basic {basic}"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3599);
}

#[tokio::test]
async fn discovery_and_jwks() {
    let t = T::new().await;
    let tid = t.sim.tenant_id();
    let d: Value = t
        .http
        .get(t.url(&format!("/{tid}/v2.0/.well-known/openid-configuration")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["issuer"], format!("{}/{tid}/v2.0", t.sim.base_url()));
    assert_eq!(
        d["token_endpoint"],
        format!("{}/{tid}/oauth2/v2.0/token", t.sim.base_url())
    );
    assert_eq!(d["id_token_signing_alg_values_supported"][0], "RS256");
    let k: Value = t
        .http
        .get(d["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(k["keys"][0]["kty"], "RSA");
    let r = t
        .http
        .get(t.url("/nope.onmicrosoft.com/v2.0/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

fn query_of(location: &str) -> std::collections::HashMap<String, String> {
    let u = url::Url::parse(location).unwrap();
    u.query_pairs().into_owned().collect()
}

#[tokio::test]
async fn authorization_code_with_pkce_and_id_token() {
    let t = T::new().await;
    let lk = t.sim.latchkey_app();
    let redirect = lk.redirect_uris[0].clone();
    let verifier = "a-verifier-that-is-long-enough-0123456789abcdefghijklmnop";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let authorize = |redirect: &str| {
        let mut u =
            url::Url::parse(&format!("{}/oauth2/v2.0/authorize", t.sim.authority())).unwrap();
        u.query_pairs_mut()
            .append_pair("client_id", &lk.client_id.to_string())
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", redirect)
            .append_pair("scope", "openid profile offline_access")
            .append_pair("state", "st8")
            .append_pair("nonce", "n0nce")
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        u.to_string()
    };
    // A redirect URI that is not registered shows an error page, no redirect.
    let r = t
        .http
        .get(authorize("http://evil.example/cb"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("AADSTS50011"));
    let r = t.http.get(authorize(&redirect)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with(&redirect));
    let q = query_of(&loc);
    assert_eq!(q["state"], "st8");
    let code = q["code"].clone();
    let cid = lk.client_id.to_string();
    let redeem = |verifier: &'static str| {
        let (cid, code, redirect, secret) = (
            cid.clone(),
            code.clone(),
            redirect.clone(),
            lk.client_secret.clone(),
        );
        let t = &t;
        async move {
            t.token_response(&[
                ("grant_type", "authorization_code"),
                ("client_id", &cid),
                ("client_secret", &secret),
                ("code", &code),
                ("redirect_uri", &redirect),
                ("code_verifier", verifier),
            ])
            .await
        }
    };
    let (s, v) = redeem("wrong-verifier").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error_codes"][0], 501481);
    let (s, v) = redeem(verifier).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["refresh_token"].is_string());
    let id_token = v["id_token"].as_str().unwrap();
    let key = jwks_key(&t, decode_header(id_token).unwrap().kid.as_deref().unwrap()).await;
    let mut val = Validation::new(Algorithm::RS256);
    val.set_audience(&[cid.as_str()]);
    val.set_issuer(&[format!("{}/{}/v2.0", t.sim.base_url(), t.sim.tenant_id())]);
    let c = decode::<Value>(id_token, &key, &val).unwrap().claims;
    assert_eq!(c["nonce"], "n0nce");
    assert_eq!(c["tid"], t.sim.tenant_id().to_string());
    assert!(
        c["preferred_username"]
            .as_str()
            .unwrap()
            .starts_with("admin@")
    );
    assert!(c["name"].is_string() && c["oid"].is_string());
    // A code redeems once.
    let (s, v) = redeem(verifier).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error_codes"][0], 54005);
}

#[tokio::test]
async fn admin_consent_grant_deny_and_wrong_tenant() {
    let t = T::new().await;
    let lk = t.sim.latchkey_app();
    let cid = lk.client_id.to_string();
    let scope = t.sim.graph_scope();
    // Before consent the multi-tenant app is not in the directory.
    let (s, v) = t
        .token_response(&[
            ("grant_type", "client_credentials"),
            ("client_id", &cid),
            ("client_secret", &lk.client_secret),
            ("scope", &scope),
        ])
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error_codes"][0], 700016);
    let consent_url = |v2: bool| {
        let path = if v2 {
            "v2.0/adminconsent"
        } else {
            "adminconsent"
        };
        let mut u = url::Url::parse(&format!("{}/{path}", t.sim.authority())).unwrap();
        u.query_pairs_mut()
            .append_pair("client_id", &cid)
            .append_pair("redirect_uri", &lk.redirect_uris[0])
            .append_pair("state", "xyz");
        if v2 {
            u.query_pairs_mut()
                .append_pair("scope", "https://graph.microsoft.com/.default");
        }
        u.to_string()
    };
    let http = client();
    t.sim.set_consent_outcome(ConsentOutcome::Deny);
    let r = http.get(consent_url(false)).send().await.unwrap();
    let q = query_of(r.headers()["location"].to_str().unwrap());
    assert_eq!(q["error"], "permission_denied");
    assert_eq!(q["state"], "xyz");
    let r = http.get(consent_url(true)).send().await.unwrap();
    let q = query_of(r.headers()["location"].to_str().unwrap());
    assert_eq!(q["error"], "consent_required");
    assert!(q["error_description"].starts_with("AADSTS65004"));
    t.sim.set_consent_outcome(ConsentOutcome::WrongTenant);
    let r = http.get(consent_url(true)).send().await.unwrap();
    let q = query_of(r.headers()["location"].to_str().unwrap());
    assert_eq!(q["admin_consent"], "True");
    assert_ne!(q["tenant"], t.sim.tenant_id().to_string());
    assert!(!t.sim.latchkey_consented());
    t.sim.set_consent_outcome(ConsentOutcome::Grant);
    let r = http.get(consent_url(true)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let q = query_of(r.headers()["location"].to_str().unwrap());
    assert_eq!(q["admin_consent"], "True");
    assert_eq!(q["tenant"], t.sim.tenant_id().to_string());
    assert_eq!(q["state"], "xyz");
    assert!(t.sim.latchkey_consented());
    let (s, v) = t
        .token_response(&[
            ("grant_type", "client_credentials"),
            ("client_id", &cid),
            ("client_secret", &lk.client_secret),
            ("scope", &scope),
        ])
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The consent shows in the audit log, and the app now has a service principal.
    let (s, v) = t
        .get(&format!("/v1.0/servicePrincipals(appId='{cid}')"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Unknown client: error page, no redirect.
    let r = http
        .get(consent_url(true).replace(&cid, "22222222-2222-2222-2222-222222222222"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("AADSTS700016"));
}

#[tokio::test]
async fn missing_permissions_give_403_and_granted_set_is_configurable() {
    let t = T::with(
        SimConfig::small(3).with_permissions(latchkey_entra_sim::SYNC_PERMISSIONS.iter().copied()),
    )
    .await;
    let (s, _) = t.get("/v1.0/users?$top=1").await;
    assert_eq!(s, StatusCode::OK);
    let g = t.group_of_kind("security").await;
    let u = &t.user_ids().await[3];
    let (s, v) = t.post(&format!("/v1.0/groups/{g}/members/$ref"), serde_json::json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{u}")})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(v["error"]["code"], "Authorization_RequestDenied");
    assert_eq!(
        v["error"]["message"],
        "Insufficient privileges to complete the operation."
    );
    // Change the grant at run time: tokens issued afterwards carry the new roles.
    t.sim.set_granted_permissions(Vec::<String>::new());
    let tok = t.fetch_token().await;
    let r = t
        .http
        .get(t.url("/v1.0/users"))
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}
