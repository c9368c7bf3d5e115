use super::*;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{EncodingKey, Header};
use proptest::prelude::*;
use serde_json::json;
use serde_json::Map;

const EC_PRIVATE: &[u8] = include_bytes!("../../../tests/fixtures/ec_private.pem");
const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "https://mcp.example/mcp";

/// The fixture's EC key as a public JWKS document.
fn fixture_jwks() -> Value {
    let key = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some("ec-1".into());
    json!({ "keys": [jwk] })
}

/// A verifier holding the fixture's EC key inline: no request ever leaves.
fn verifier() -> JwtVerifier {
    JwtVerifier::builder(ISSUER, AUDIENCE)
        .jwks(fixture_jwks())
        .build()
        .unwrap()
}

fn sign(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec-1".into());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
    )
    .unwrap()
}

fn verify(verifier: &JwtVerifier, token: &str) -> std::result::Result<AuthInfo, VerifyError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(verifier.inner.verify(token))
}

fn now() -> i64 {
    crate::clock::now_secs() as i64
}

/// A claim that is right, wrong, of the wrong type, or missing.
fn claim(right: Value, wrong: Value) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(Some(right)),
        Just(Some(wrong)),
        Just(Some(json!(42))),
        Just(Some(json!(null))),
        Just(Some(json!(["x", {"y": 1}]))),
        Just(None),
    ]
}

proptest! {
    #[test]
    fn signed_tokens_pass_exactly_when_iss_aud_and_exp_are_right(
        iss in claim(json!(ISSUER), json!("https://other.example")),
        aud in claim(json!([AUDIENCE, "https://x.example"]), json!("https://mcp.example/other")),
        exp in claim(json!(now() + 600), json!(now() - 600)),
        sub in proptest::option::of(prop_oneof![any::<String>().prop_map(Value::from), Just(json!(7))]),
        scope in proptest::option::of(prop_oneof![
            "[a-z: ]{0,20}".prop_map(Value::from), Just(json!(["a", 1])), Just(json!({}))
        ]),
        kid in prop_oneof![Just(Some("ec-1".to_owned())), Just(Some("other".to_owned())), Just(None)],
        tamper in any::<bool>(),
    ) {
        let mut claims = Map::new();
        for (name, value) in [("iss", &iss), ("aud", &aud), ("exp", &exp), ("sub", &sub), ("scope", &scope)] {
            if let Some(value) = value {
                claims.insert(name.into(), value.clone());
            }
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = kid.clone();
        let key = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
        let mut token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
        if tamper {
            // Another signature of the right length: valid base64url, wrong bytes.
            let cut = token.rfind('.').unwrap() + 1;
            let flipped = if token.as_bytes()[cut] == b'A' { "B" } else { "A" };
            token.replace_range(cut..cut + 1, flipped);
        }
        let expected = iss == Some(json!(ISSUER))
            && aud == Some(json!([AUDIENCE, "https://x.example"]))
            && exp.as_ref().and_then(Value::as_i64).is_some_and(|at| at > now())
            && kid.as_deref() != Some("other")
            && !tamper;
        let result = verify(&verifier(), &token);
        prop_assert_eq!(result.is_ok(), expected, "{:?}", result.as_ref().err());
        match result {
            Ok(info) => prop_assert_eq!(info.subject.clone(), sub.as_ref().and_then(|s| s.as_str().map(str::to_owned))),
            Err(error) => prop_assert!(matches!(error, VerifyError::Invalid(_)), "{error}"),
        }
    }

    #[test]
    fn any_string_is_refused_as_invalid_without_panicking(token in any::<String>()) {
        let result = verify(&verifier(), &token);
        prop_assert!(matches!(result, Err(VerifyError::Invalid(_))));
    }

    #[test]
    fn any_header_over_any_claims_is_refused_or_checked(
        header in proptest::collection::btree_map("[a-z]{1,4}", any::<String>().prop_map(Value::from), 0..5),
        alg in prop_oneof![
            Just("ES256".to_owned()), Just("HS256".to_owned()), Just("none".to_owned()),
            Just("RS256".to_owned()), "[A-Z0-9]{0,6}",
        ],
        claims in proptest::collection::vec(any::<u8>(), 0..64),
        signature in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        use base64::Engine;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let mut header: Map<String, Value> = header.into_iter().collect();
        header.insert("alg".into(), alg.into());
        let token = format!(
            "{}.{}.{}",
            b64(Value::Object(header).to_string().as_bytes()),
            b64(&claims),
            b64(&signature)
        );
        let result = verify(&verifier(), &token);
        prop_assert!(matches!(result, Err(VerifyError::Invalid(_))));
    }
}

#[test]
fn each_issuer_is_checked_with_its_own_keys() {
    let other_key = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
    let mut other_jwk = Jwk::from_encoding_key(&other_key, Algorithm::ES256).unwrap();
    other_jwk.common.key_id = Some("ec-1".into());
    // The second issuer's keys are an RSA set: the fixture's EC key is not among them.
    let rsa_only = json!({"keys": [{"kty": "RSA", "kid": "r", "n": "sXch", "e": "AQAB"}]});
    let verifier = JwtVerifier::builder(ISSUER, AUDIENCE)
        .jwks(fixture_jwks())
        .trust(TrustedIssuer::new("https://second.example").jwks(rsa_only))
        .build()
        .unwrap();
    let claims = |iss: &str| json!({"iss": iss, "aud": AUDIENCE, "exp": now() + 600, "sub": "u"});
    assert!(verify(&verifier, &sign(&claims(ISSUER))).is_ok());
    let error = verify(&verifier, &sign(&claims("https://second.example"))).unwrap_err();
    assert!(error.to_string().contains("no key"), "{error}");
    let error = verify(&verifier, &sign(&claims("https://nobody.example"))).unwrap_err();
    assert!(error.to_string().contains("another issuer"), "{error}");
}

#[test]
fn tenant_templates_trust_only_the_listed_tenants() {
    let template = "https://login.example/{tenant}/v2.0";
    let verifier = JwtVerifier::for_audience(AUDIENCE)
        .trust(
            TrustedIssuer::tenants(template, ["tenant-a", "b.onmicrosoft.example"])
                .unwrap()
                .jwks(fixture_jwks()),
        )
        .build()
        .unwrap();
    let claims = |iss: &str| json!({"iss": iss, "aud": AUDIENCE, "exp": now() + 600});
    assert!(verify(
        &verifier,
        &sign(&claims("https://login.example/tenant-a/v2.0"))
    )
    .is_ok());
    assert!(verify(
        &verifier,
        &sign(&claims("https://login.example/b.onmicrosoft.example/v2.0"))
    )
    .is_ok());
    for refused in [
        "https://login.example/tenant-c/v2.0",
        "https://login.example/{tenant}/v2.0",
        "https://login.example/common/v2.0",
        "https://login.example/tenant-a/v2.0/",
    ] {
        assert!(
            verify(&verifier, &sign(&claims(refused))).is_err(),
            "{refused}"
        );
    }
}

#[test]
fn bad_templates_and_tenants_are_configuration_errors() {
    for (template, tenants) in [
        ("https://login.example/v2.0", vec!["a"]),
        ("https://login.example/{tenant}/{tenant}", vec!["a"]),
        ("https://login.example/{tenant}/v2.0", vec![]),
        ("https://login.example/{tenant}/v2.0", vec!["a/b"]),
        (
            "https://login.example/{tenant}/v2.0",
            vec!["evil.example@x"],
        ),
        ("https://login.example/{tenant}/v2.0", vec![".."]),
    ] {
        let error = TrustedIssuer::tenants(template, tenants).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Config);
    }
}

#[test]
fn extra_audiences_are_accepted_exactly() {
    let verifier = JwtVerifier::builder(ISSUER, AUDIENCE)
        .audience("api://mcp-server")
        .jwks(fixture_jwks())
        .build()
        .unwrap();
    let claims = |aud: &str| json!({"iss": ISSUER, "aud": aud, "exp": now() + 600});
    assert!(verify(&verifier, &sign(&claims("api://mcp-server"))).is_ok());
    assert!(verify(&verifier, &sign(&claims(&format!("{AUDIENCE}/")))).is_ok());
    assert!(verify(&verifier, &sign(&claims("api://mcp-server/"))).is_err());
    assert!(verify(&verifier, &sign(&claims("api://other"))).is_err());
}

#[test]
fn tokens_without_aud_pass_only_for_an_issuer_that_opted_in_and_an_authorized_party() {
    let strict = verifier();
    let lenient = JwtVerifier::for_audience(AUDIENCE)
        .trust(
            TrustedIssuer::new(ISSUER)
                .jwks(fixture_jwks())
                .without_audience(["mcp-client"]),
        )
        .build()
        .unwrap();
    let no_aud = |party: Value| json!({"iss": ISSUER, "exp": now() + 600, "azp": party});
    let keycloak_like = sign(&no_aud(json!("mcp-client")));
    assert!(verify(&strict, &keycloak_like).is_err());
    assert!(verify(&lenient, &keycloak_like).is_ok());
    assert!(verify(&lenient, &sign(&no_aud(json!("other-client")))).is_err());
    assert!(verify(&lenient, &sign(&no_aud(json!(7)))).is_err());
    let client_id_only = json!({"iss": ISSUER, "exp": now() + 600, "client_id": "mcp-client"});
    assert!(verify(&lenient, &sign(&client_id_only)).is_ok());
    // An aud that names another resource is refused, whatever the azp.
    let elsewhere =
        json!({"iss": ISSUER, "exp": now() + 600, "aud": "https://other", "azp": "mcp-client"});
    assert!(verify(&lenient, &sign(&elsewhere)).is_err());
}

#[test]
fn build_without_keys_asks_for_discovery_and_inline_private_keys_are_refused() {
    let error = JwtVerifier::builder(ISSUER, AUDIENCE).build().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    let error = JwtVerifier::for_audience(AUDIENCE)
        .discover_lazily()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    let private = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "d": "AA"}]});
    let error = JwtVerifier::builder(ISSUER, AUDIENCE)
        .jwks(private)
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
}

proptest! {
    #[test]
    fn tenants_expand_to_issuers_that_keep_the_templates_shape(
        tenants in proptest::collection::vec("[ -~]{0,12}", 0..4),
    ) {
        let template = "https://login.example/{tenant}/v2.0";
        match TrustedIssuer::tenants(template, tenants.clone()) {
            Ok(trusted) => {
                prop_assert_eq!(trusted.issuers.len(), tenants.len());
                for issuer in &trusted.issuers {
                    let url = Url::parse(issuer).unwrap();
                    prop_assert_eq!(url.host_str(), Some("login.example"));
                    prop_assert_eq!(url.path_segments().unwrap().count(), 2);
                    prop_assert!(url.query().is_none() && url.fragment().is_none());
                }
            }
            Err(error) => prop_assert_eq!(error.kind(), ErrorKind::Config),
        }
    }
}
