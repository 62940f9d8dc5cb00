//! Password hashing with argon2id (the crate's defaults: 19 MiB, 2 passes), off the async threads.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};

use crate::error::{Error, Result};

/// Shortest accepted password, in characters.
pub const MIN_LEN: usize = 8;
/// Longest accepted password, in bytes (hashing cost grows with length).
pub const MAX_LEN: usize = 1024;

/// Checks the password rules.
pub fn check_rules(pw: &str) -> Result<()> {
    if pw.chars().count() < MIN_LEN {
        return Err(Error::bad(format!("password must be at least {MIN_LEN} characters")));
    }
    if pw.len() > MAX_LEN {
        return Err(Error::TooLarge(format!("password must be at most {MAX_LEN} bytes")));
    }
    Ok(())
}

/// Hashes a password into a PHC string.
pub async fn hash(pw: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(pw.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| Error::Internal(format!("argon2: {e}")))
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?
}

/// Checks a password against a stored PHC string.
pub async fn verify(pw: String, phc: String) -> bool {
    tokio::task::spawn_blocking(move || Argon2::default().verify_password(pw.as_bytes(), phc.as_str()).is_ok())
        .await
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn hash_then_verify() {
        let h = super::hash("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(super::verify("correct horse".into(), h.clone()).await);
        assert!(!super::verify("wrong horse".into(), h).await);
    }
}
