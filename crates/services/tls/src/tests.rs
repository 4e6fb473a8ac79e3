//! Generation, reuse and loading of the server certificate.

use std::os::unix::fs::PermissionsExt;

use super::*;

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "airlock-tls-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn generated_pair_is_created_once_with_a_private_key() {
    let dir = temp_dir();
    let paths = CertPaths::resolve(None, None, &dir);
    assert!(paths.generated);
    assert_eq!(paths.cert, dir.join("tls/server.crt"));
    let config = server_config(&paths, &[b"h2"]).unwrap();
    assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
    let mode = std::fs::metadata(&paths.key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let first = std::fs::read(&paths.cert).unwrap();
    assert!(!paths.ensure().unwrap(), "an existing pair is reused");
    server_config(&paths, &[]).unwrap();
    assert_eq!(std::fs::read(&paths.cert).unwrap(), first);
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.join("tls"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn listeners_starting_together_share_one_pair() {
    let dir = temp_dir();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let dir = dir.clone();
            std::thread::spawn(move || server_config(&CertPaths::generated(&dir), &[]).map(|_| ()))
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
    let paths = CertPaths::generated(&dir);
    server_config(&paths, &[]).unwrap();
}

#[test]
fn configured_files_must_exist_and_are_never_generated() {
    let dir = temp_dir();
    let cert = dir.join("mine.crt");
    let key = dir.join("mine.key");
    let paths = CertPaths::resolve(Some(&cert), Some(&key), &dir);
    assert!(!paths.generated);
    let err = server_config(&paths, &[]).unwrap_err();
    assert!(matches!(err, TlsError::Io { action: "read", .. }), "{err}");
    assert!(err.to_string().contains("mine.crt"), "{err}");
    assert!(!dir.join("tls").exists());
}

#[test]
fn configured_pair_loads_and_garbage_is_named() {
    let dir = temp_dir();
    let cert = dir.join("a.crt");
    let key = dir.join("a.key");
    generate_self_signed(&cert, &key).unwrap();
    let paths = CertPaths::resolve(Some(&cert), Some(&key), &dir);
    server_config(&paths, &[]).unwrap();

    std::fs::write(&cert, "not pem").unwrap();
    let err = server_config(&paths, &[]).unwrap_err();
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");

    // A certificate with another pair's key.
    let other_cert = dir.join("b.crt");
    let other_key = dir.join("b.key");
    generate_self_signed(&other_cert, &other_key).unwrap();
    generate_self_signed(&cert, &key).unwrap();
    let crossed = CertPaths::resolve(Some(&cert), Some(&other_key), &dir);
    let err = server_config(&crossed, &[]).unwrap_err();
    assert!(matches!(err, TlsError::Mismatch { .. }), "{err}");
    assert!(!err.to_string().contains("PRIVATE KEY"), "{err}");
}
