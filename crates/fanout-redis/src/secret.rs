//! Signed tasks and results: a secret shared by coordinators and workers,
//! so that access to the broker alone is not enough to have a worker run
//! anything, or to make a coordinator accept a result.
//!
//! HMAC-SHA256 from `ring`, which the TLS stack already brings in: no
//! further dependency, and its verification takes constant time.

use std::fmt;

use ring::hmac;

use crate::wire::{self, Envelope, Recorded};

/// The shortest secret accepted, in bytes.
const MIN_LEN: usize = 16;

/// A key shared by a run's coordinator and the workers that serve it.
///
/// With a secret, a coordinator signs every task it queues and accepts only
/// results signed with the same secret; a worker runs only tasks signed
/// with its secret and signs the results it records. Whoever can write to
/// the broker but does not hold the secret can then neither have a task
/// run nor forge a result: a worker refuses such a task (it goes to the
/// dead letters, and its run records it as undeliverable), and a
/// coordinator turns such a result into [`TaskError::Undeliverable`].
///
/// What it does not do: hide the tasks (use `rediss://` for that), or stop
/// a signed task of an earlier run from being queued again by someone with
/// access to the broker (its result goes to that earlier run).
///
/// `Debug` never shows the key.
///
/// [`TaskError::Undeliverable`]: fanout::TaskError::Undeliverable
#[derive(Clone)]
pub struct Secret {
    key: hmac::Key,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A secret too short to be safe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeakSecret {
    len: usize,
}

impl fmt::Display for WeakSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a secret must be at least {MIN_LEN} bytes, this one has {}: \
             make one with `head -c 32 /dev/urandom | base64`",
            self.len
        )
    }
}

impl std::error::Error for WeakSecret {}

impl Secret {
    /// A secret from its bytes (for example the contents of a file, or of
    /// an environment variable).
    ///
    /// # Errors
    /// [`WeakSecret`] if `key` is shorter than 16 bytes.
    pub fn new(key: impl AsRef<[u8]>) -> Result<Self, WeakSecret> {
        let key = key.as_ref();
        if key.len() < MIN_LEN {
            return Err(WeakSecret { len: key.len() });
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        })
    }

    fn tag(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.key);
        for p in parts {
            // Length-prefixed, so that parts cannot be shifted into each
            // other.
            ctx.update(&(p.len() as u64).to_le_bytes());
            ctx.update(p);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    fn check(&self, parts: &[&[u8]], tag: &[u8; 32]) -> bool {
        // `verify` compares in constant time.
        let mut msg = Vec::new();
        for p in parts {
            msg.extend_from_slice(&(p.len() as u64).to_le_bytes());
            msg.extend_from_slice(p);
        }
        hmac::verify(&self.key, &msg, tag).is_ok()
    }

    /// Signs `env` (everything in it but the signature).
    pub(crate) fn sign_envelope<P: serde::Serialize, R: serde::Serialize>(
        &self,
        env: &mut Envelope<P, R>,
    ) {
        env.signature = None;
        let bytes = wire::encode(env).expect("an envelope always encodes");
        env.signature = Some(self.tag(&[b"task", &bytes]));
    }

    /// `true` if `env` carries a valid signature.
    pub(crate) fn verify_envelope(&self, env: &Envelope) -> bool {
        let Some(tag) = env.signature else {
            return false;
        };
        let unsigned = Envelope {
            signature: None,
            ..env.clone()
        };
        let bytes = wire::encode(&unsigned).expect("an envelope always encodes");
        self.check(&[b"task", &bytes], &tag)
    }

    /// Signs `rec`, a record of `run`.
    pub(crate) fn sign_record(&self, run: &str, rec: &mut Recorded) {
        rec.signature = None;
        let bytes = wire::encode(rec).expect("a record always encodes");
        rec.signature = Some(self.tag(&[b"result", run.as_bytes(), &bytes]));
    }

    /// `true` if `rec`, read from `run`'s results, carries a valid
    /// signature.
    pub(crate) fn verify_record(&self, run: &str, rec: &Recorded) -> bool {
        let Some(tag) = rec.signature else {
            return false;
        };
        let unsigned = Recorded {
            signature: None,
            ..rec.clone()
        };
        let bytes = wire::encode(&unsigned).expect("a record always encodes");
        self.check(&[b"result", run.as_bytes(), &bytes], &tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::WireOutcome;

    fn env() -> Envelope {
        Envelope {
            version: wire::VERSION,
            run: "r".into(),
            index: 3,
            attempt: 1,
            types: 7,
            timeout_ms: None,
            traceparent: None,
            signature: None,
            payload: vec![1, 2, 3],
        }
    }

    #[test]
    fn a_short_secret_is_refused_with_how_to_make_one() {
        let err = Secret::new("short").unwrap_err();
        assert!(err
            .to_string()
            .contains("at least 16 bytes, this one has 5"));
        assert_eq!(
            format!("{:?}", Secret::new([7u8; 32]).unwrap()),
            "Secret(..)"
        );
    }

    #[test]
    fn a_changed_field_or_another_key_fails_verification() {
        let s = Secret::new([1u8; 32]).unwrap();
        let mut e = env();
        assert!(!s.verify_envelope(&e), "unsigned");
        s.sign_envelope(&mut e);
        assert!(s.verify_envelope(&e));
        let mut changed = e.clone();
        changed.payload[0] = 9;
        assert!(!s.verify_envelope(&changed));
        let mut moved = e.clone();
        moved.index = 4;
        assert!(!s.verify_envelope(&moved));
        assert!(!Secret::new([2u8; 32]).unwrap().verify_envelope(&e));

        let mut rec = Recorded {
            index: 3,
            attempt: 1,
            worker: "w".into(),
            outcome: WireOutcome::Ok(vec![4]),
            signature: None,
        };
        s.sign_record("r", &mut rec);
        assert!(s.verify_record("r", &rec));
        assert!(!s.verify_record("other-run", &rec), "bound to its run");
        rec.outcome = WireOutcome::Ok(vec![5]);
        assert!(!s.verify_record("r", &rec));
    }
}
