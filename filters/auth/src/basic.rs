//! HTTP Basic authentication (RFC 7617): parsing the `Authorization` header
//! and checking a password against an htpasswd-style hash. Plaintext
//! passwords are never accepted in the configuration.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use constant_time_eq::constant_time_eq;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// A stored password hash.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// htpasswd `{SHA}base64(sha1(password))`.
    Sha1([u8; 20]),
    /// `{SSHA256}base64(sha256(password ‖ salt) ‖ salt)`.
    SaltedSha256 { digest: [u8; 32], salt: Vec<u8> },
    /// bcrypt (`$2a$`, `$2b$`, `$2y$`), as `htpasswd -B` writes it.
    Bcrypt(String),
}

/// Hashes are secrets too: never shown.
impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sha1(_) => "PasswordHash::Sha1(..)",
            Self::SaltedSha256 { .. } => "PasswordHash::SaltedSha256(..)",
            Self::Bcrypt(_) => "PasswordHash::Bcrypt(..)",
        })
    }
}

impl PasswordHash {
    /// Parses a stored hash; the error says which forms are accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(b64) = text.strip_prefix("{SHA}") {
            let bytes = STANDARD
                .decode(b64)
                .map_err(|_| "`{SHA}` must be followed by base64".to_owned())?;
            let digest = <[u8; 20]>::try_from(bytes.as_slice())
                .map_err(|_| "a `{SHA}` hash is 20 bytes (28 base64 characters)".to_owned())?;
            return Ok(Self::Sha1(digest));
        }
        if let Some(b64) = text.strip_prefix("{SSHA256}") {
            let bytes = STANDARD
                .decode(b64)
                .map_err(|_| "`{SSHA256}` must be followed by base64".to_owned())?;
            let (digest, salt) = bytes.split_at_checked(32).ok_or_else(|| {
                "a `{SSHA256}` hash is a 32-byte digest followed by the salt".to_owned()
            })?;
            if salt.is_empty() {
                return Err("a `{SSHA256}` hash needs a salt after its 32-byte digest".to_owned());
            }
            let digest = <[u8; 32]>::try_from(digest).map_err(|_| "bad digest".to_owned())?;
            return Ok(Self::SaltedSha256 {
                digest,
                salt: salt.to_vec(),
            });
        }
        if ["$2a$", "$2b$", "$2y$"].iter().any(|p| text.starts_with(p)) {
            // Checked now, so a typo is a configuration error, not a 401 later.
            if bcrypt::verify("", text).is_err() {
                return Err("not a valid bcrypt hash (`$2y$<cost>$<53 characters>`)".to_owned());
            }
            return Ok(Self::Bcrypt(text.to_owned()));
        }
        Err("a password hash must be `{SHA}...` (htpasswd -s), `{SSHA256}...` or bcrypt `$2y$...` (htpasswd -B); plaintext is refused".to_owned())
    }

    /// Whether `password` has this hash; digests compare in constant time.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            Self::Sha1(digest) => constant_time_eq(Sha1::digest(password).as_slice(), digest),
            Self::SaltedSha256 { digest, salt } => {
                let mut hasher = Sha256::new();
                hasher.update(password);
                hasher.update(salt);
                constant_time_eq(hasher.finalize().as_slice(), digest)
            }
            Self::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
        }
    }

    /// Whether checking costs enough that verified credentials are worth
    /// caching (bcrypt: tens of milliseconds by design).
    pub fn is_slow(&self) -> bool {
        matches!(self, Self::Bcrypt(_))
    }

    /// What checking a password costs, to order hashes: bcrypt's cost
    /// factor above every digest (which cost microseconds).
    pub fn cost(&self) -> u32 {
        match self {
            Self::Bcrypt(hash) => hash
                .get(4..6)
                .and_then(|c| c.parse().ok())
                .map_or(1, |cost: u32| cost + 1),
            _ => 0,
        }
    }
}

/// Why a Basic `Authorization` value is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BasicError {
    /// Not the `Basic` scheme: another method's credentials.
    OtherScheme,
    /// Not base64, not UTF-8, or no `:` between user and password.
    Malformed,
}

/// The user and password of an `Authorization: Basic ...` value.
pub fn parse_authorization(value: &[u8]) -> Result<(String, Vec<u8>), BasicError> {
    let (scheme, rest) = match value.iter().position(|&b| b == b' ') {
        Some(i) => value.split_at(i),
        None => return Err(BasicError::OtherScheme),
    };
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return Err(BasicError::OtherScheme);
    }
    let encoded = rest.trim_ascii();
    let decoded = STANDARD
        .decode(encoded)
        .map_err(|_| BasicError::Malformed)?;
    let colon = decoded
        .iter()
        .position(|&b| b == b':')
        .ok_or(BasicError::Malformed)?;
    let (user, password) = decoded.split_at(colon);
    let user = String::from_utf8(user.to_vec()).map_err(|_| BasicError::Malformed)?;
    Ok((user, password.get(1..).unwrap_or_default().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htpasswd_sha1() {
        // `htpasswd -nbs alice secret`
        let h = PasswordHash::parse("{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=").unwrap();
        assert!(h.verify(b"secret"));
        assert!(!h.verify(b"Secret"));
    }

    #[test]
    fn salted_sha256() {
        let salt = b"NaCl";
        let mut hasher = Sha256::new();
        hasher.update(b"pw");
        hasher.update(salt);
        let mut stored = hasher.finalize().to_vec();
        stored.extend_from_slice(salt);
        let h = PasswordHash::parse(&format!("{{SSHA256}}{}", STANDARD.encode(&stored))).unwrap();
        assert!(h.verify(b"pw"));
        assert!(!h.verify(b"pw2"));
    }

    #[test]
    fn bcrypt_hash() {
        let hash = bcrypt::hash_with_salt("hunter2", 4, [7; 16])
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        let h = PasswordHash::parse(&hash).unwrap();
        assert!(h.is_slow());
        assert!(h.verify(b"hunter2"));
        assert!(!h.verify(b"hunter3"));
    }

    #[test]
    fn refuses_plaintext_and_garbage() {
        for bad in [
            "secret",
            "{SHA}nope",
            "{SHA}AAAA",
            "$2y$10$short",
            "{SSHA256}AAAA",
        ] {
            assert!(PasswordHash::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn authorization_values() {
        assert_eq!(
            parse_authorization(b"Basic YWxpY2U6c2VjcmV0"),
            Ok(("alice".to_owned(), b"secret".to_vec()))
        );
        assert_eq!(
            parse_authorization(b"basic  YWxpY2U6OnM="),
            Ok(("alice".to_owned(), b":s".to_vec()))
        );
        assert_eq!(
            parse_authorization(b"Bearer x"),
            Err(BasicError::OtherScheme)
        );
        assert_eq!(parse_authorization(b"Basic !!"), Err(BasicError::Malformed));
        // "alice" without a colon
        assert_eq!(
            parse_authorization(b"Basic YWxpY2U="),
            Err(BasicError::Malformed)
        );
    }
}
