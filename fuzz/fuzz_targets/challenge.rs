//! `WWW-Authenticate`: the parser reads any text without panicking, and every challenge
//! this crate builds (from any strings) is a valid header value that parses back to the
//! same error, description, metadata URL and scope set, once cleaned of `"`, `\` and
//! non-printable characters.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use http::{HeaderValue, StatusCode, header};
use libfuzzer_sys::fuzz_target;
use mcp_oauth::challenge::{BearerError, Challenge, Rejection, parse_www_authenticate};

#[derive(Arbitrary, Debug)]
struct Input {
    raw: String,
    error: Option<u8>,
    description: Option<String>,
    resource_metadata: Option<String>,
    scope: Vec<String>,
    baseline: Vec<String>,
}

/// What the builder promises to keep of a value: printable ASCII without `"` and `\`.
fn clean(value: &str) -> String {
    value
        .chars()
        .filter(|c| c.is_ascii() && !c.is_ascii_control() && *c != '"' && *c != '\\')
        .collect()
}

fn expected_scope(scopes: &[String]) -> Option<String> {
    let kept: Vec<String> = scopes
        .iter()
        .map(|s| clean(s))
        .filter(|s| !s.is_empty() && !s.contains(' '))
        .collect();
    (!kept.is_empty()).then(|| kept.join(" "))
}

fn check_round_trip(challenge: &Challenge) {
    let text = challenge.to_header_string();
    let value = HeaderValue::from_str(&text).expect("a built challenge is a valid header value");
    assert_eq!(
        challenge.to_header_value(),
        value,
        "no fallback to a bare `Bearer`"
    );
    let parsed = parse_www_authenticate(&text);
    assert_eq!(parsed.len(), 1, "one challenge: {text}");
    let Some(bearer) = parsed.first() else { return };
    assert_eq!(bearer.scheme, "Bearer");
    assert_eq!(
        bearer.param("error"),
        challenge.error.map(BearerError::as_str)
    );
    assert_eq!(
        bearer.param("error_description").map(str::to_owned),
        challenge.error_description.as_deref().map(clean)
    );
    assert_eq!(
        bearer.param("resource_metadata").map(str::to_owned),
        challenge.resource_metadata.as_deref().map(clean)
    );
    assert_eq!(
        bearer.param("scope").map(str::to_owned),
        expected_scope(&challenge.scope)
    );
    let expected_params = usize::from(challenge.error.is_some())
        + usize::from(challenge.error_description.is_some())
        + usize::from(challenge.resource_metadata.is_some())
        + usize::from(expected_scope(&challenge.scope).is_some());
    assert_eq!(bearer.params.len(), expected_params, "{text}");
}

/// Inputs that start with this byte are a header value as text (the seeds are real
/// challenges); it is also used as every field of a challenge to build.
const RAW: u8 = 0;

fuzz_target!(|data: &[u8]| {
    let input = match data.split_first() {
        Some((&RAW, rest)) => {
            let text = String::from_utf8_lossy(rest).into_owned();
            Input {
                error: Some(1),
                description: Some(text.clone()),
                resource_metadata: Some(text.clone()),
                scope: text.split(' ').map(str::to_owned).collect(),
                baseline: text.split(',').map(str::to_owned).collect(),
                raw: text,
            }
        }
        _ => match Input::arbitrary_take_rest(Unstructured::new(data)) {
            Ok(input) => input,
            Err(_) => return,
        },
    };
    run(input);
});

fn run(input: Input) {
    // The parser: any text, no panic, and what it returns is well formed.
    for challenge in parse_www_authenticate(&input.raw) {
        assert!(!challenge.scheme.is_empty());
        for (name, _) in &challenge.params {
            assert!(!name.is_empty());
            assert_eq!(*name, name.to_ascii_lowercase());
        }
    }

    // The builder, from arbitrary strings.
    let error = input.error.map(|e| match e % 3 {
        0 => BearerError::InvalidRequest,
        1 => BearerError::InvalidToken,
        _ => BearerError::InsufficientScope,
    });
    let challenge = Challenge {
        error,
        error_description: input.description,
        resource_metadata: input.resource_metadata.clone(),
        scope: input.scope.clone(),
    };
    check_round_trip(&challenge);

    // The rejections the bearer layer sends, with an arbitrary metadata URL and scopes.
    let metadata = input.resource_metadata.unwrap_or_default();
    for rejection in [
        Rejection::MissingToken,
        Rejection::InsufficientScope {
            required: input.scope,
        },
    ] {
        let status = rejection.status();
        let expected = rejection
            .challenge(&metadata, &input.baseline)
            .expect("these rejections have a challenge");
        check_round_trip(&expected);
        let response = rejection.into_response(&metadata, &input.baseline);
        assert_eq!(response.status(), status);
        assert!(matches!(
            status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ));
        assert_eq!(
            response.headers().get(header::WWW_AUTHENTICATE),
            Some(&expected.to_header_value())
        );
    }
}
