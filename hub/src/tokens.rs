//! Bearer tokens: generation, hashing (only SHA-256 digests are kept in memory and on disk),
//! constant-time comparison, and loading the admin and enrollment tokens at start-up.

use std::io;
use std::path::Path;

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::TokenSource;

/// SHA-256 digest of a token.
pub type TokenHash = [u8; 32];

/// A fresh random token: 32 bytes from the OS generator, hex encoded.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The digest under which a token is stored.
pub fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares two digests without an early exit, so timing says nothing about where they differ.
pub fn digests_equal(a: &TokenHash, b: &TokenHash) -> bool {
    a.ct_eq(b).into()
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The password of an `Authorization: Basic <base64(user:password)>` header value.
pub fn basic_password(header: Option<&str>) -> Option<String> {
    use base64::Engine;
    let (scheme, encoded) = header?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_user, password) = text.split_once(':')?;
    (!password.is_empty()).then(|| password.to_string())
}

/// Resolves a token source: given by the operator, or generated once into `DATA_DIR/<file_name>`
/// (mode 0600) and read from there on later starts. Returns the token's digest.
pub fn load(source: &TokenSource, data_dir: &Path, file_name: &str) -> io::Result<TokenHash> {
    let token = match source {
        TokenSource::Given(secret) => secret.expose().to_string(),
        TokenSource::Generated => {
            let path = data_dir.join(file_name);
            match read_token(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let token = generate();
                    fleetgate_daemon::write_atomic(&path, format!("{token}\n").as_bytes(), 0o600)?;
                    tracing::info!(path = %path.display(), "generated a new token");
                    token
                }
                Err(e) => return Err(e),
            }
        }
    };
    Ok(hash(&token))
}

/// Reads a token file written by [`load`] (or by the operator), trimmed; an empty file is an
/// error.
pub fn read_token(path: &Path) -> io::Result<String> {
    let token = std::fs::read_to_string(path)?.trim().to_string();
    if token.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is empty", path.display()),
        ));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer   abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }

    #[test]
    fn basic_header() {
        // "prometheus:s3cret-metrics-token"
        let h = "Basic cHJvbWV0aGV1czpzM2NyZXQtbWV0cmljcy10b2tlbg==";
        assert_eq!(
            basic_password(Some(h)).as_deref(),
            Some("s3cret-metrics-token")
        );
        assert_eq!(basic_password(Some("Bearer abc")), None);
        assert_eq!(basic_password(Some("Basic !!!")), None);
        // "user:" has no password.
        assert_eq!(basic_password(Some("Basic dXNlcjo=")), None);
    }

    #[test]
    fn generated_token_is_stable_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = load(&TokenSource::Generated, dir.path(), "admin.token").unwrap();
        let b = load(&TokenSource::Generated, dir.path(), "admin.token").unwrap();
        assert!(digests_equal(&a, &b));
        let text = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
        assert!(digests_equal(&hash(text.trim()), &a));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("admin.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
