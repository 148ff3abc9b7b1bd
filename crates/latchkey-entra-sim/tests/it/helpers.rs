use latchkey_entra_sim::{SimConfig, SimHandle, SimServer};
use reqwest::StatusCode;
use serde_json::Value;

pub struct T {
    pub sim: SimHandle,
    pub http: reqwest::Client,
    pub token: String,
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

impl T {
    pub async fn new() -> T {
        Self::with(SimConfig::small(7)).await
    }

    pub async fn with(cfg: SimConfig) -> T {
        let sim = SimServer::start(cfg).await.unwrap();
        let http = client();
        let mut t = T {
            sim,
            http,
            token: String::new(),
        };
        t.token = t.fetch_token().await;
        t
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.sim.base_url(), path)
    }

    pub async fn token_response(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let url = format!("{}/oauth2/v2.0/token", self.sim.authority());
        let r = self.http.post(url).form(form).send().await.unwrap();
        let s = r.status();
        (s, r.json().await.unwrap())
    }

    pub async fn fetch_token(&self) -> String {
        let app = self.sim.customer_app();
        let id = app.client_id.to_string();
        let scope = self.sim.graph_scope();
        let (s, v) = self
            .token_response(&[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &app.client_secret),
                ("scope", &scope),
            ])
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["access_token"].as_str().unwrap().to_string()
    }

    pub async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let r = req.send().await.unwrap();
        let s = r.status();
        let h = r.headers().clone();
        let text = r.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (s, v, h)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (s, v, _) = self
            .send(self.http.get(self.url(path)).bearer_auth(&self.token))
            .await;
        (s, v)
    }

    /// GET with advanced-query headers.
    pub async fn get_eventual(&self, path: &str) -> (StatusCode, Value) {
        let (s, v, _) = self
            .send(
                self.http
                    .get(self.url(path))
                    .bearer_auth(&self.token)
                    .header("ConsistencyLevel", "eventual"),
            )
            .await;
        (s, v)
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (s, v, _) = self
            .send(
                self.http
                    .post(self.url(path))
                    .bearer_auth(&self.token)
                    .json(&body),
            )
            .await;
        (s, v)
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (s, v, _) = self
            .send(
                self.http
                    .patch(self.url(path))
                    .bearer_auth(&self.token)
                    .json(&body),
            )
            .await;
        (s, v)
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        let (s, v, _) = self
            .send(self.http.delete(self.url(path)).bearer_auth(&self.token))
            .await;
        (s, v)
    }

    /// Follows `@odata.nextLink` verbatim and collects every item.
    pub async fn get_all(&self, path: &str, eventual: bool) -> Vec<Value> {
        let mut url = self.url(path);
        let mut out = Vec::new();
        for _ in 0..10_000 {
            let mut req = self.http.get(&url).bearer_auth(&self.token);
            if eventual {
                req = req.header("ConsistencyLevel", "eventual");
            }
            let (s, v, _) = self.send(req).await;
            assert_eq!(s, StatusCode::OK, "{url}: {v}");
            out.extend(v["value"].as_array().unwrap().iter().cloned());
            match v["@odata.nextLink"].as_str() {
                Some(n) => url = n.to_string(),
                None => return out,
            }
        }
        panic!("paging did not end");
    }

    /// Ground truth over the introspection API.
    pub async fn sim_get(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn sim_post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json().await.unwrap())
    }

    pub async fn group_of_kind(&self, kind: &str) -> String {
        let v = self.sim_get("/_sim/truth/groups").await;
        v["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} group"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn user_ids(&self) -> Vec<String> {
        let v = self.sim_get("/_sim/truth/users").await;
        v["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect()
    }
}

pub fn err_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

pub fn err_msg(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("")
}
