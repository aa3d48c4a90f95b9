//! A named, typed handler: the one value both sides share, so that a
//! coordinator cannot send a handler the wrong types.

use std::any::type_name;
use std::fmt;
use std::marker::PhantomData;

/// The name of a task handler and the types it works on: input `I`, result
/// `T`, error `E`. Declare it once, in code both the coordinator and the
/// workers build from, and pass the same value to
/// [`Worker::serve`](crate::Worker::serve) and to the coordinator's run
/// methods: the compiler then checks that both sides agree on the types.
///
/// ```
/// use fanout_redis::Handler;
///
/// /// Thumbnails: a path in, the thumbnail's size out.
/// pub const THUMBNAIL: Handler<String, u64, String> = Handler::new("thumbnail");
/// assert_eq!(THUMBNAIL.name(), "thumbnail");
/// ```
///
/// Across processes built from different code the compiler cannot check;
/// each task carries a fingerprint of the three type names, and a worker
/// whose handler of that name has other types refuses the task (it ends as
/// [`TaskError::Undeliverable`](fanout::TaskError::Undeliverable), naming
/// both) rather than decode garbage.
pub struct Handler<I, T, E> {
    name: &'static str,
    types: PhantomData<fn(I) -> Result<T, E>>,
}

impl<I, T, E> Handler<I, T, E> {
    /// A handler named `name`: the name of its queue on the broker, so one
    /// per kind of task. Names are case-sensitive; any UTF-8 text without
    /// `{` or `}` (they delimit Redis Cluster hash tags).
    ///
    /// # Panics
    /// If `name` is empty or holds `{` or `}` (at compile time in a
    /// `const`).
    pub const fn new(name: &'static str) -> Self {
        assert!(!name.is_empty(), "a handler needs a name");
        let bytes = name.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            assert!(
                bytes[i] != b'{' && bytes[i] != b'}',
                "a handler's name cannot hold braces"
            );
            i += 1;
        }
        Self {
            name,
            types: PhantomData,
        }
    }

    /// The handler's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The fingerprint of the input, result and error type names.
    pub(crate) fn types(&self) -> u64 {
        types_fingerprint(&[type_name::<I>(), type_name::<T>(), type_name::<E>()])
    }

    /// The three type names, for messages.
    pub(crate) fn type_names() -> String {
        format!(
            "input {}, result {}, error {}",
            type_name::<I>(),
            type_name::<T>(),
            type_name::<E>()
        )
    }
}

impl<I, T, E> Clone for Handler<I, T, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<I, T, E> Copy for Handler<I, T, E> {}

impl<I, T, E> fmt::Debug for Handler<I, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handler")
            .field("name", &self.name)
            .field("types", &Self::type_names())
            .finish()
    }
}

/// FNV-1a over length-prefixed names: stable across builds and processes,
/// unlike `std`'s hasher.
fn types_fingerprint(names: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for name in names {
        for &b in (name.len() as u64)
            .to_le_bytes()
            .iter()
            .chain(name.as_bytes())
        {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handlers_of_other_types_have_other_fingerprints() {
        let a: Handler<u32, u32, String> = Handler::new("h");
        let b: Handler<u32, u64, String> = Handler::new("h");
        assert_ne!(a.types(), b.types());
        assert_eq!(a.types(), Handler::<u32, u32, String>::new("other").types());
    }
}
