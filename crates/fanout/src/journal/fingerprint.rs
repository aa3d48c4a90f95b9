//! What identifies a run, so that a journal is never resumed by another.

use std::fmt;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// A 64-bit fingerprint of whatever identifies a run (the `fanout`
/// command feeds its command words and every input; a library caller, a
/// name and version of its batch, say). The sidecar keeps it, and a resume
/// with a different one is refused (see
/// [`Options::on_mismatch`](super::Options::on_mismatch)).
///
/// It is FNV-1a over each piece's length (8 bytes, little-endian) and then
/// its bytes, so it is stable across builds and platforms (unlike `std`'s
/// hasher), which a file on disk needs, and `["ab", "c"]` differs from
/// `["a", "bc"]`. It detects mistakes, not attacks: it is not a
/// cryptographic hash.
///
/// ```
/// use fanout::journal::Fingerprint;
///
/// let a = Fingerprint::of(["nightly transcode", "v3"]);
/// assert_eq!(a, Fingerprint::of(["nightly transcode", "v3"]));
/// assert_ne!(a, Fingerprint::of(["nightly transcode", "v4"]));
/// assert_eq!(a.to_string().len(), 16); // hex digits, as the sidecar holds it
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(u64);

impl Fingerprint {
    /// The fingerprint of `pieces`, in order.
    #[must_use]
    pub fn of<I>(pieces: I) -> Fingerprint
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let mut hasher = Fingerprinter::new();
        for piece in pieces {
            hasher.feed(piece.as_ref());
        }
        hasher.finish()
    }

    /// The fingerprint's 64 bits.
    #[must_use]
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// A fingerprint from its 64 bits (as [`as_u64`](Fingerprint::as_u64)
    /// gave them).
    #[must_use]
    pub const fn from_u64(bits: u64) -> Fingerprint {
        Fingerprint(bits)
    }

    /// Reads the 16 hex digits of [`Display`](fmt::Display).
    pub(crate) fn from_hex(hex: &str) -> Option<Fingerprint> {
        (hex.len() == 16)
            .then(|| u64::from_str_radix(hex, 16).ok())
            .flatten()
            .map(Fingerprint)
    }
}

/// Sixteen lowercase hex digits.
impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Builds a [`Fingerprint`] piece by piece, for input too large to collect
/// first: the same pieces give the same fingerprint as
/// [`Fingerprint::of`].
///
/// ```
/// use fanout::journal::{Fingerprint, Fingerprinter};
///
/// let mut hasher = Fingerprinter::new();
/// for word in ["sha256sum", "{}"] {
///     hasher.feed(word.as_bytes());
/// }
/// assert_eq!(hasher.finish(), Fingerprint::of(["sha256sum", "{}"]));
/// ```
#[derive(Debug, Clone)]
pub struct Fingerprinter {
    hash: u64,
}

impl Fingerprinter {
    /// A hasher that has seen nothing yet.
    #[must_use]
    pub fn new() -> Fingerprinter {
        Fingerprinter { hash: FNV_OFFSET }
    }

    /// Adds one piece. Cost: one multiplication per byte, plus eight for
    /// the length.
    pub fn feed(&mut self, piece: &[u8]) -> &mut Fingerprinter {
        for &b in (piece.len() as u64).to_le_bytes().iter().chain(piece) {
            self.hash ^= u64::from(b);
            self.hash = self.hash.wrapping_mul(FNV_PRIME);
        }
        self
    }

    /// The fingerprint of the pieces fed so far.
    #[must_use]
    pub fn finish(&self) -> Fingerprint {
        Fingerprint(self.hash)
    }
}

impl Default for Fingerprinter {
    fn default() -> Fingerprinter {
        Fingerprinter::new()
    }
}
