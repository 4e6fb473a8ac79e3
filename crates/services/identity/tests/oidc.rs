//! OIDC verification against a provider served on loopback (discovery and JWKS over real
//! HTTP), with tokens signed here: every way a token can be wrong, key rotation, the
//! refresh rate limit, and a provider that goes down.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airlock_identity::oidc::{OidcError, OidcProvider, OidcSettings};
use airlock_identity::{Identity, IdentityError};
use airlock_model::PrincipalSource;
use airlock_vault::Secret;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An EC P-256 signing key and its public JWK.
struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
    raw_public: Vec<u8>,
}

fn signing_key(kid: &str) -> SigningKey {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let raw = pair.public_key_raw().to_vec();
    assert_eq!(raw.len(), 65);
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": b64(&raw[1..33]), "y": b64(&raw[33..]),
    });
    SigningKey {
        kid: kid.into(),
        encoding: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
        jwk,
        raw_public: raw,
    }
}

/// Discovery and JWKS on 127.0.0.1, with the keys it publishes and whether it is up.
struct Provider {
    issuer: String,
    keys: Arc<Mutex<Vec<Value>>>,
    up: Arc<AtomicBool>,
    jwks_fetches: Arc<AtomicUsize>,
}

async fn provider() -> Provider {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let p = Provider {
        issuer: issuer.clone(),
        keys: Arc::new(Mutex::new(Vec::new())),
        up: Arc::new(AtomicBool::new(true)),
        jwks_fetches: Arc::new(AtomicUsize::new(0)),
    };
    let (keys, up, fetches) = (p.keys.clone(), p.up.clone(), p.jwks_fetches.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let (keys, up, fetches, issuer) =
                (keys.clone(), up.clone(), fetches.clone(), issuer.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                let path = request.split_whitespace().nth(1).unwrap_or("").to_owned();
                let (status, body) = if !up.load(Ordering::SeqCst) {
                    ("503 Service Unavailable", "{}".to_owned())
                } else if path == "/.well-known/openid-configuration" {
                    (
                        "200 OK",
                        json!({ "issuer": issuer, "jwks_uri": format!("{issuer}/jwks") })
                            .to_string(),
                    )
                } else if path == "/jwks" {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    (
                        "200 OK",
                        json!({ "keys": *keys.lock().unwrap() }).to_string(),
                    )
                } else {
                    ("404 Not Found", "{}".to_owned())
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    p
}

fn settings(issuer: &str) -> OidcSettings {
    OidcSettings {
        name: "local".into(),
        issuer: issuer.into(),
        audiences: vec!["urn:airlock".into()],
        principal_claim: "client_id".into(),
        groups_claim: "realm_access.roles".into(),
        algorithms: vec![Algorithm::ES256],
        leeway: Duration::from_secs(5),
    }
}

fn now() -> i64 {
    airlock_model::Timestamp::now().unix()
}

fn claims(issuer: &str) -> Value {
    json!({
        "iss": issuer, "aud": "urn:airlock", "client_id": "agent-1", "sub": "x",
        "realm_access": { "roles": ["ai-agents", "readers"] },
        "exp": now() + 300, "iat": now(), "jti": "tok-1",
    })
}

fn sign(key: &SigningKey, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

async fn identity_for(issuer: &str) -> Identity {
    let dir = std::env::temp_dir().join(format!(
        "airlock-oidc-{}-{}",
        std::process::id(),
        rand_u64()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let store = airlock_store::SqliteStore::open_in(&dir).await.unwrap();
    let identity = Identity::new(Arc::new(store));
    identity.set_providers(vec![settings(issuer)]);
    identity
}

fn rand_u64() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

async fn refused(identity: &Identity, token: &str) -> OidcError {
    match identity.authenticate_full(&Secret::new(token.into())).await {
        Err(IdentityError::Oidc(e)) => e,
        other => panic!("expected an OIDC refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_valid_token_gives_its_principal_groups_issuer_and_id() {
    let p = provider().await;
    let key = signing_key("k1");
    p.keys.lock().unwrap().push(key.jwk.clone());
    let identity = identity_for(&p.issuer).await;
    let a = identity
        .authenticate_full(&Secret::new(sign(&key, &claims(&p.issuer))))
        .await
        .unwrap();
    assert_eq!(a.principal.name, "agent-1");
    assert_eq!(a.principal.groups, ["ai-agents", "readers"]);
    assert_eq!(a.principal.source, PrincipalSource::Oidc);
    assert!(a.principal.expires_at.is_some());
    assert_eq!(a.issuer.as_deref(), Some(p.issuer.as_str()));
    assert_eq!(a.token_id.as_deref(), Some("tok-1"));
}

#[tokio::test]
async fn every_wrong_token_is_refused_with_a_reason() {
    let p = provider().await;
    let key = signing_key("k1");
    p.keys.lock().unwrap().push(key.jwk.clone());
    let identity = identity_for(&p.issuer).await;
    let good = claims(&p.issuer);
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    assert!(matches!(
        refused(&identity, &sign(&key, &with("aud", json!("urn:other")))).await,
        OidcError::Audience(_)
    ));
    assert!(matches!(
        refused(
            &identity,
            &sign(&key, &with("iss", json!("http://127.0.0.1:1")))
        )
        .await,
        OidcError::UnknownIssuer(_)
    ));
    assert!(matches!(
        refused(&identity, &sign(&key, &with("exp", json!(now() - 60)))).await,
        OidcError::Expired
    ));
    assert!(matches!(
        refused(&identity, &sign(&key, &with("nbf", json!(now() + 600)))).await,
        OidcError::NotYetValid
    ));
    // Within the leeway, a just-expired token still passes.
    assert!(
        identity
            .authenticate(&Secret::new(sign(&key, &with("exp", json!(now() - 2)))))
            .await
            .is_ok()
    );
    let no_principal = {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove("client_id");
        c
    };
    assert!(
        matches!(refused(&identity, &sign(&key, &no_principal)).await, OidcError::Claim(c) if c == "client_id")
    );
    // Another key under the same kid: the signature does not verify.
    let impostor = signing_key("k1");
    assert!(matches!(
        refused(&identity, &sign(&impostor, &good)).await,
        OidcError::Signature(_)
    ));
    // A flipped signature byte.
    let token = sign(&key, &good);
    let (head, sig) = token.rsplit_once('.').unwrap();
    let mut sig = sig.to_owned();
    let first = if sig.starts_with('A') { "B" } else { "A" };
    sig.replace_range(0..1, first);
    assert!(matches!(
        refused(&identity, &format!("{head}.{sig}")).await,
        OidcError::Signature(_)
    ));
    // alg: none.
    let payload = token.split('.').nth(1).unwrap();
    let none = format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"JWT"}"#));
    assert!(
        matches!(refused(&identity, &none).await, OidcError::Algorithm { .. }),
        "{:?}",
        refused(&identity, &none).await
    );
    // HS256 signed with the provider's public key as the HMAC secret.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let confused =
        jsonwebtoken::encode(&header, &good, &EncodingKey::from_secret(&key.raw_public)).unwrap();
    assert!(matches!(
        refused(&identity, &confused).await,
        OidcError::Algorithm { .. }
    ));
    // Not a JWT, and garbage with two dots.
    assert!(matches!(
        identity.authenticate(&Secret::new("a.b.c".into())).await,
        Err(IdentityError::Oidc(OidcError::Malformed))
    ));
    // No message carries the token.
    let e = refused(&identity, &sign(&key, &with("aud", json!("urn:other"))))
        .await
        .to_string();
    assert!(!e.contains(payload), "{e}");
}

#[tokio::test]
async fn an_unknown_kid_refreshes_the_keys_once_so_rotation_works_and_garbage_does_not_hammer() {
    let p = provider().await;
    let old = signing_key("old");
    p.keys.lock().unwrap().push(old.jwk.clone());
    let identity = identity_for(&p.issuer).await;
    identity
        .authenticate(&Secret::new(sign(&old, &claims(&p.issuer))))
        .await
        .unwrap();
    assert_eq!(p.jwks_fetches.load(Ordering::SeqCst), 1);
    // Garbage kids: at most one refresh per window, however many arrive.
    for i in 0..20 {
        let stranger = signing_key(&format!("garbage-{i}"));
        assert!(matches!(
            refused(&identity, &sign(&stranger, &claims(&p.issuer))).await,
            OidcError::UnknownKey { .. }
        ));
    }
    assert!(
        p.jwks_fetches.load(Ordering::SeqCst) <= 2,
        "{} fetches",
        p.jwks_fetches.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_after_the_refresh_window() {
    let p = provider().await;
    let old = signing_key("old");
    p.keys.lock().unwrap().push(old.jwk.clone());
    let identity = identity_for(&p.issuer).await;
    identity
        .authenticate(&Secret::new(sign(&old, &claims(&p.issuer))))
        .await
        .unwrap();
    // The provider rotates: a new key appears.
    let new = signing_key("new");
    p.keys.lock().unwrap().push(new.jwk.clone());
    // Within the refresh window the new kid is unknown; after it, it is fetched.
    tokio::time::sleep(airlock_identity::oidc::keys::MIN_REFRESH + Duration::from_millis(200))
        .await;
    let a = identity
        .authenticate(&Secret::new(sign(&new, &claims(&p.issuer))))
        .await
        .unwrap();
    assert_eq!(a.name, "agent-1");
}

#[tokio::test]
async fn cached_keys_keep_working_while_the_provider_is_down() {
    let p = provider().await;
    let key = signing_key("k1");
    p.keys.lock().unwrap().push(key.jwk.clone());
    let identity = identity_for(&p.issuer).await;
    identity
        .authenticate(&Secret::new(sign(&key, &claims(&p.issuer))))
        .await
        .unwrap();
    p.up.store(false, Ordering::SeqCst);
    // An unknown kid triggers a refresh that fails; the known key still verifies.
    let stranger = signing_key("other");
    assert!(matches!(
        refused(&identity, &sign(&stranger, &claims(&p.issuer))).await,
        OidcError::UnknownKey { .. }
    ));
    identity
        .authenticate(&Secret::new(sign(&key, &claims(&p.issuer))))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_provider_that_was_never_reached_refuses_with_why() {
    let p = provider().await;
    p.up.store(false, Ordering::SeqCst);
    let key = signing_key("k1");
    let provider = OidcProvider::new(settings(&p.issuer), reqwest::Client::new());
    match provider.verify(&sign(&key, &claims(&p.issuer))).await {
        Err(OidcError::Keys { error, .. }) => assert!(error.to_string().contains("503"), "{error}"),
        other => panic!("{other:?}"),
    }
}
