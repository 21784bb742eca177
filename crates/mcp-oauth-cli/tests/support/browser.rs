//! An MCP client and its user's browser: redirects followed by hand, cookies kept by name
//! (every server in these tests is on 127.0.0.1), and a transcript of everything received.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

/// The client's registered redirect URI (nothing listens there: the browser stops at it).
pub const REDIRECT: &str = "http://127.0.0.1:43817/callback";
/// The client's PKCE verifier, and its S256 challenge (RFC 7636, appendix B).
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// One answer, as the client or its browser received it.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn location(&self) -> Option<url::Url> {
        self.headers
            .get("location")
            .map(|l| url::Url::parse(l.to_str().unwrap()).unwrap())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): HTTP {} {}", self.status, self.body))
    }
}

pub struct Browser {
    pub http: reqwest::Client,
    /// The cookies, by name.
    pub jar: HashMap<String, String>,
    /// Everything received, for failure messages and for "never reached the client" checks.
    pub transcript: String,
}

impl Browser {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            jar: HashMap::new(),
            transcript: String::new(),
        }
    }

    pub async fn send(&mut self, request: reqwest::RequestBuilder) -> Reply {
        let cookies = self
            .jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let request = if cookies.is_empty() {
            request
        } else {
            request.header("cookie", cookies)
        };
        let res = request.send().await.expect("request");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        for value in headers.get_all("set-cookie") {
            let pair = value.to_str().unwrap().split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            self.jar.insert(k.trim().to_owned(), v.to_owned());
        }
        let body = res.text().await.expect("body");
        self.transcript
            .push_str(&format!("HTTP {status}\n{headers:?}\n{body}\n"));
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&mut self, url: &str) -> Reply {
        let request = self.http.get(url);
        self.send(request).await
    }

    pub async fn post_form<F: serde::Serialize + ?Sized>(&mut self, url: &str, form: &F) -> Reply {
        let request = self.http.post(url).form(form);
        self.send(request).await
    }

    /// Registers a public client (RFC 7591) with [`REDIRECT`]: its `client_id`.
    pub async fn register(&mut self, issuer: &str, name: &str) -> String {
        let request = self.http.post(format!("{issuer}/register")).json(&json!({
            "client_name": name,
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }));
        let reply = self.send(request).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.json()["client_id"].as_str().unwrap().to_owned()
    }
}
