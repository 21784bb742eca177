//! A verified token's claim set (RFC 7519 §4, RFC 9068 §2.2) and the checks every token gets.

use std::ops::Deref;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::error::{VerifyError, truncate};

/// The claims of a token: the JWT payload, or the introspection response, or what a custom
/// verifier returned. Top-level member names are unique (duplicates are refused at parse).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims(Map<String, Value>);

impl Claims {
    /// Wraps a JSON object.
    pub fn new(map: Map<String, Value>) -> Self {
        Self(map)
    }

    /// Parses a JSON object, refusing duplicate member names.
    ///
    /// # Errors
    ///
    /// [`VerifyError::Malformed`] when the bytes are not such an object.
    pub fn from_json_slice(bytes: &[u8]) -> Result<Self, VerifyError> {
        parse_json_object(bytes).map(Self).map_err(|()| {
            VerifyError::Malformed("claims are not a JSON object with unique member names")
        })
    }

    /// The whole claim set.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The claim set, owned.
    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }

    /// A string claim (`None` when absent or not a string).
    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    /// `iss`.
    pub fn iss(&self) -> Option<&str> {
        self.str("iss")
    }

    /// `sub`.
    pub fn sub(&self) -> Option<&str> {
        self.str("sub")
    }

    /// The audiences: `aud` as a string or an array of strings.
    ///
    /// # Errors
    ///
    /// [`VerifyError::InvalidClaim`] when `aud` has another shape.
    pub fn audiences(&self) -> Result<Vec<&str>, VerifyError> {
        match self.0.get("aud") {
            None => Ok(Vec::new()),
            Some(Value::String(aud)) => Ok(vec![aud.as_str()]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().ok_or(VerifyError::InvalidClaim("aud")))
                .collect(),
            Some(_) => Err(VerifyError::InvalidClaim("aud")),
        }
    }

    /// A NumericDate claim (RFC 7519 §2) in whole seconds, fractions cut off.
    ///
    /// # Errors
    ///
    /// [`VerifyError::InvalidClaim`] when the claim is present but not a finite number.
    pub fn numeric_date(&self, name: &'static str) -> Result<Option<i64>, VerifyError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => {
                if let Some(i) = n.as_i64() {
                    return Ok(Some(i));
                }
                match n.as_f64() {
                    // Beyond ±2^53 seconds nothing is meaningful; clamp instead of casting blindly.
                    Some(f) if f.is_finite() => Ok(Some(f.clamp(-9.0e15, 9.0e15).floor() as i64)),
                    _ => Err(VerifyError::InvalidClaim(name)),
                }
            }
            Some(_) => Err(VerifyError::InvalidClaim(name)),
        }
    }

    /// The granted scopes: `scope` (space-separated string, or an array) and `scp` (string
    /// or array, as Entra and Okta issue), without duplicates, in order of appearance.
    pub fn scopes(&self) -> Vec<String> {
        let mut scopes: Vec<String> = Vec::new();
        for name in ["scope", "scp"] {
            let mut push = |s: &str| {
                if !s.is_empty() && !scopes.iter().any(|have| have == s) {
                    scopes.push(s.to_owned());
                }
            };
            match self.0.get(name) {
                Some(Value::String(list)) => list.split_ascii_whitespace().for_each(&mut push),
                Some(Value::Array(items)) => {
                    items.iter().filter_map(Value::as_str).for_each(&mut push)
                }
                _ => {}
            }
        }
        scopes
    }

    /// The client the token was issued to: `client_id` (RFC 9068), else `azp`, else `cid`.
    pub fn client_id(&self) -> Option<&str> {
        self.str("client_id")
            .or_else(|| self.str("azp"))
            .or_else(|| self.str("cid"))
    }

    /// A list-of-strings claim (`roles`, `permissions`); a single string counts as one item.
    pub fn string_list(&self, name: &str) -> Vec<String> {
        match self.0.get(name) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl Deref for Claims {
    type Target = Map<String, Value>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl From<Map<String, Value>> for Claims {
    fn from(map: Map<String, Value>) -> Self {
        Self(map)
    }
}

/// A claim that, when present, must have this string value (Keycloak's `typ: Bearer`, which
/// keeps refresh and ID tokens out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimIfPresent {
    /// The claim.
    pub name: &'static str,
    /// The only accepted value.
    pub value: &'static str,
}

impl ClaimIfPresent {
    pub(crate) fn check(&self, claims: &Claims) -> Result<(), VerifyError> {
        match claims.get(self.name) {
            None => Ok(()),
            Some(v) if v.as_str() == Some(self.value) => Ok(()),
            Some(_) => Err(VerifyError::InvalidClaim(self.name)),
        }
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The default clock-skew allowance for `exp`, `nbf` and `iat`: 60 seconds.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// The time rules every token gets (RFC 7519 §4.1.4–4.1.6): `exp` has not passed, `nbf`
/// and `iat` are not in the future, each with a leeway for clock skew. The pipeline
/// ([`Authenticator`](crate::authenticator::Authenticator)) applies them; tools that explain a token (the
/// CLI's `doctor`) ask the same rules instead of restating them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRules {
    leeway: Duration,
}

impl Default for TimeRules {
    /// [`DEFAULT_LEEWAY`].
    fn default() -> Self {
        Self::new(DEFAULT_LEEWAY)
    }
}

impl TimeRules {
    /// The rules with this clock-skew allowance.
    pub fn new(leeway: Duration) -> Self {
        Self { leeway }
    }

    /// The clock-skew allowance.
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    fn leeway_secs(&self) -> i64 {
        i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX)
    }

    /// Whether a token whose `exp` is `exp` has expired at `now` (seconds since the epoch):
    /// `now >= exp + leeway`.
    pub fn is_expired(&self, exp: i64, now: i64) -> bool {
        now >= exp.saturating_add(self.leeway_secs())
    }

    /// Whether an `nbf` or `iat` of `at` is too far in the future at `now`: `at > now + leeway`.
    pub fn is_in_future(&self, at: i64, now: i64) -> bool {
        at > now.saturating_add(self.leeway_secs())
    }

    /// Applies the rules to `claims` at `now`: `exp` (required unless `require_exp` is off),
    /// then `nbf`, then `iat`.
    ///
    /// # Errors
    ///
    /// The first rule broken: [`VerifyError::Expired`], [`VerifyError::MissingClaim`],
    /// [`VerifyError::NotYetValid`], or [`VerifyError::InvalidClaim`] for a date that is
    /// not a number.
    pub fn check(&self, claims: &Claims, now: i64, require_exp: bool) -> Result<(), VerifyError> {
        // The dates are read one at a time, so that the first broken rule is the one named.
        match claims.numeric_date("exp")? {
            Some(exp) if self.is_expired(exp, now) => return Err(VerifyError::Expired),
            Some(_) => {}
            None if require_exp => return Err(VerifyError::MissingClaim("exp")),
            None => {}
        }
        if let Some(nbf) = claims.numeric_date("nbf")?
            && self.is_in_future(nbf, now)
        {
            return Err(VerifyError::NotYetValid { claim: "nbf" });
        }
        if let Some(iat) = claims.numeric_date("iat")?
            && self.is_in_future(iat, now)
        {
            return Err(VerifyError::NotYetValid { claim: "iat" });
        }
        Ok(())
    }

    /// [`TimeRules::check`] on dates read before ([`Dates::of`]): the verified-token cache
    /// checks a cached token this way on every request, without reading its claims again.
    pub(crate) fn check_dates(
        &self,
        dates: Dates,
        now: i64,
        require_exp: bool,
    ) -> Result<(), VerifyError> {
        match dates.exp {
            Some(exp) if self.is_expired(exp, now) => return Err(VerifyError::Expired),
            Some(_) => {}
            None if require_exp => return Err(VerifyError::MissingClaim("exp")),
            None => {}
        }
        for (at, claim) in [(dates.nbf, "nbf"), (dates.iat, "iat")] {
            if at.is_some_and(|at| self.is_in_future(at, now)) {
                return Err(VerifyError::NotYetValid { claim });
            }
        }
        Ok(())
    }
}

/// A token's `exp`, `nbf` and `iat`, read once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Dates {
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
}

impl Dates {
    /// The dates of `claims`.
    ///
    /// # Errors
    ///
    /// A date that is not a number.
    pub(crate) fn of(claims: &Claims) -> Result<Self, VerifyError> {
        Ok(Self {
            exp: claims.numeric_date("exp")?,
            nbf: claims.numeric_date("nbf")?,
            iat: claims.numeric_date("iat")?,
        })
    }
}

/// [`TimeRules::check`] with `leeway`.
pub(crate) fn check_times(
    claims: &Claims,
    now: i64,
    leeway: Duration,
    require_exp: bool,
) -> Result<(), VerifyError> {
    TimeRules::new(leeway).check(claims, now, require_exp)
}

/// `iss` must equal `expected` byte for byte.
pub(crate) fn check_issuer(claims: &Claims, expected: &str) -> Result<(), VerifyError> {
    match claims.iss() {
        Some(iss) if iss == expected => Ok(()),
        found => Err(VerifyError::InvalidIssuer {
            expected: expected.to_owned(),
            found: found.map(truncate),
        }),
    }
}

/// Parses a JSON object and refuses duplicate member names at the top level.
///
/// RFC 7515 §5.2 and RFC 7519 §4 let a parser either reject duplicates or take the last one;
/// taking one silently lets two parsers disagree about a token, so this one rejects.
pub(crate) fn parse_json_object(
    bytes: &[u8],
) -> Result<serde_json::Map<String, serde_json::Value>, ()> {
    let value: StrictObject = serde_json::from_slice(bytes).map_err(|_| ())?;
    Ok(value.0)
}

struct StrictObject(serde_json::Map<String, serde_json::Value>);

impl<'de> serde::Deserialize<'de> for StrictObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = StrictObject;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object without duplicate member names")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut object = serde_json::Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    if object.contains_key(&key) {
                        return Err(serde::de::Error::custom("duplicate member name"));
                    }
                    let value = map.next_value()?;
                    object.insert(key, value);
                }
                Ok(StrictObject(object))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Claims {
        match value {
            Value::Object(map) => Claims(map),
            _ => Claims::default(),
        }
    }

    const LEEWAY: Duration = Duration::from_secs(60);

    #[test]
    fn dates_read_once_give_the_same_answers_as_the_claims() {
        // Every combination of absent, past, near, future and fractional dates, with and
        // without `exp` required: the cached check answers as the full one.
        let now = 1_800_000_000_i64;
        let values = [
            None,
            Some(json!(now - 3600)),
            Some(json!(now - 30)),
            Some(json!(now + 30)),
            Some(json!(now + 3600)),
            Some(json!((now - 61) as f64 + 0.5)),
        ];
        let rules = TimeRules::new(LEEWAY);
        let mut compared = 0;
        for exp in &values {
            for nbf in &values {
                for iat in &values {
                    let mut map = serde_json::Map::new();
                    for (name, value) in [("exp", exp), ("nbf", nbf), ("iat", iat)] {
                        if let Some(value) = value {
                            map.insert(name.into(), value.clone());
                        }
                    }
                    let claims = claims(Value::Object(map));
                    let dates = Dates::of(&claims).expect("numbers");
                    for require_exp in [true, false] {
                        assert_eq!(
                            rules
                                .check_dates(dates, now, require_exp)
                                .map_err(|e| e.to_string()),
                            rules
                                .check(&claims, now, require_exp)
                                .map_err(|e| e.to_string()),
                            "{claims:?} require_exp={require_exp}"
                        );
                        compared += 1;
                    }
                }
            }
        }
        assert_eq!(compared, 432);
        assert!(Dates::of(&claims(json!({"exp": "soon"}))).is_err());
    }

    #[test]
    fn exp_in_past_fails() {
        let c = claims(json!({"exp": 1000}));
        assert!(matches!(
            check_times(&c, 1061, LEEWAY, true),
            Err(VerifyError::Expired)
        ));
        assert!(matches!(
            check_times(&c, 1060, LEEWAY, true),
            Err(VerifyError::Expired)
        ));
    }

    #[test]
    fn exp_in_past_but_in_leeway_ok() {
        let c = claims(json!({"exp": 1000}));
        assert!(check_times(&c, 1059, LEEWAY, true).is_ok());
    }

    #[test]
    fn missing_exp_fails_unless_optional() {
        let c = claims(json!({}));
        assert!(matches!(
            check_times(&c, 0, LEEWAY, true),
            Err(VerifyError::MissingClaim("exp"))
        ));
        assert!(check_times(&c, 0, LEEWAY, false).is_ok());
    }

    #[test]
    fn nbf_and_iat_in_future_fail() {
        let c = claims(json!({"exp": 10_000, "nbf": 2000}));
        assert!(matches!(
            check_times(&c, 1000, LEEWAY, true),
            Err(VerifyError::NotYetValid { claim: "nbf" })
        ));
        assert!(check_times(&c, 1950, LEEWAY, true).is_ok());
        let c = claims(json!({"exp": 10_000, "iat": 2000}));
        assert!(matches!(
            check_times(&c, 1000, LEEWAY, true),
            Err(VerifyError::NotYetValid { claim: "iat" })
        ));
    }

    #[test]
    fn non_numeric_dates_are_invalid() {
        for bad in [
            json!({"exp": "1000"}),
            json!({"exp": null}),
            json!({"exp": [1]}),
            json!({"nbf": true}),
        ] {
            assert!(matches!(
                check_times(&claims(bad), 0, LEEWAY, false),
                Err(VerifyError::InvalidClaim(_))
            ));
        }
        let c = claims(json!({"exp": 1e300}));
        assert!(check_times(&c, 0, LEEWAY, true).is_ok());
        let c = claims(json!({"exp": 1500.9}));
        assert_eq!(c.numeric_date("exp").ok().flatten(), Some(1500));
    }

    #[test]
    fn iss_not_matching_fails() {
        let c = claims(json!({"iss": "https://a.example/"}));
        assert!(check_issuer(&c, "https://a.example/").is_ok());
        assert!(matches!(
            check_issuer(&c, "https://a.example"),
            Err(VerifyError::InvalidIssuer { .. })
        ));
        assert!(matches!(
            check_issuer(&claims(json!({})), "x"),
            Err(VerifyError::InvalidIssuer { found: None, .. })
        ));
    }

    #[test]
    fn scopes_come_from_scope_and_scp() {
        let c = claims(json!({"scope": "a  b a", "scp": ["c", "b", 5]}));
        assert_eq!(c.scopes(), vec!["a", "b", "c"]);
        let c = claims(json!({"scp": "x y"}));
        assert_eq!(c.scopes(), vec!["x", "y"]);
        assert!(claims(json!({"scope": 7})).scopes().is_empty());
    }

    #[test]
    fn audiences_accept_string_or_array_only() {
        assert_eq!(
            claims(json!({"aud": "a"})).audiences().ok(),
            Some(vec!["a"])
        );
        assert_eq!(
            claims(json!({"aud": ["a", "b"]})).audiences().ok(),
            Some(vec!["a", "b"])
        );
        assert!(claims(json!({"aud": ["a", 1]})).audiences().is_err());
        assert!(claims(json!({"aud": {}})).audiences().is_err());
    }
}
