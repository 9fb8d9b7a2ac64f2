//! Credentials at rest: argon2id password hashes, random secrets, and the SHA-256 under which
//! session ids, CSRF tokens and API tokens are stored. Pure functions; hashing a password is
//! slow on purpose, so async callers run it on the blocking pool (see `AccountService`).

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::{Digest, Sha256};

use super::AccountError;

/// The shortest password accepted (ASVS 2.1.1).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest password accepted: room for any passphrase or generated password (ASVS 2.1.2
/// asks for at least 64), and a bound on the work one hash takes.
pub const MAX_PASSWORD_CHARS: usize = 128;

/// Why a new password is refused, if it is: too short, too long, or nothing but spaces.
pub fn password_problem(password: &str) -> Option<String> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        Some(format!("a password needs at least {MIN_PASSWORD_CHARS} characters"))
    } else if chars > MAX_PASSWORD_CHARS {
        Some(format!("a password has at most {MAX_PASSWORD_CHARS} characters"))
    } else if password.trim().is_empty() {
        Some("a password needs more than spaces".to_owned())
    } else {
        None
    }
}

/// `[a-z][a-z0-9._-]*`, at most 64 characters: what an account may be called.
pub fn valid_user_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

/// Hashes a password with argon2id and a random salt, as a PHC string. Blocks for tens of
/// milliseconds: from async code, go through `AccountService` or `spawn_blocking`.
///
/// # Errors
///
/// [`AccountError::Hashing`] when argon2 refuses the input, which its default parameters do
/// not do for any password [`password_problem`] accepts.
pub fn hash_password(password: &str) -> Result<String, AccountError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| AccountError::Hashing(error.to_string()))
}

/// Whether `password` matches a stored PHC hash. Blocks like [`hash_password`].
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .is_ok_and(|hash| Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
}

/// An argon2id hash of a password nobody knows, checked when a name does not exist so that
/// timing does not tell which names do. The first call hashes, so it blocks.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&new_secret()).unwrap_or_default())
}

/// A fresh random secret: 256 bits, as 64 hex digits.
pub fn new_secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// How secrets are kept: only their SHA-256 (64 hex digits) is stored, so a stolen database
/// opens nothing.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A session's CSRF token, derived from its secret id: only the browser holding the session
/// cookie and the pages rendered for it know it, and only its hash is stored (see
/// [`secret_hash`]), so a stolen database yields no token.
pub fn csrf_token(session_id: &str) -> String {
    secret_hash(&format!("csrf:{session_id}"))
}

/// Turns for sign-in attempts: attempts for the same name wait for each other, so that
/// parallel guesses all see the same count of failures. Striped over a fixed set of locks, so
/// that inventing names cannot grow it.
#[derive(Debug)]
pub(crate) struct LoginTurns(Vec<tokio::sync::Mutex<()>>);

impl Default for LoginTurns {
    fn default() -> Self {
        LoginTurns((0..64).map(|_| tokio::sync::Mutex::new(())).collect())
    }
}

impl LoginTurns {
    /// Waits for `name`'s turn; the turn lasts as long as the guard.
    pub(crate) async fn turn(&self, name: &str) -> tokio::sync::MutexGuard<'_, ()> {
        let stripe = Sha256::digest(name.as_bytes())[0] as usize % self.0.len();
        self.0[stripe].lock().await
    }
}
