//! The registry client's unit test: the secret never shows in `Debug`.

use super::*;

#[test]
fn the_secret_never_shows_in_debug() {
    let settings =
        RegistrySettings::new(Duration::from_secs(1)).with_secret(Some(&"s3cret".into()));
    assert!(!format!("{settings:?}").contains("s3cret"));
    let client = RegistryClient::new("127.0.0.1:3000", settings).unwrap();
    let shown = format!("{client:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("REDACTED"), "{shown}");
    assert!(matches!(
        RegistryClient::new(
            "127.0.0.1:3000",
            RegistrySettings::new(Duration::from_secs(1)).with_secret(Some(&"a\nb".into()))
        ),
        Err(RegistryError::BadSecret)
    ));
}
