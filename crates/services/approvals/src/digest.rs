//! What an approval is for: a digest of the exact statement and its parameters.
//!
//! Each part is length-prefixed, so that no two different statements (text, the texts
//! of the prepared statements it executes, parameter values and formats) share a
//! digest by moving bytes from one part to the next.

use sha2::{Digest, Sha256};

/// Builds the hex SHA-256 that binds an approval to one statement.
#[derive(Clone)]
pub struct StatementDigest {
    hasher: Sha256,
}

impl StatementDigest {
    /// Starts with the statement text as the client sent it.
    pub fn new(text: &str) -> Self {
        let mut d = StatementDigest {
            hasher: Sha256::new(),
        };
        d.hasher.update(b"airlock-statement-v1");
        d.part(b'T', text.as_bytes());
        d
    }

    fn part(&mut self, tag: u8, bytes: &[u8]) {
        self.hasher.update([tag]);
        self.hasher.update((bytes.len() as u64).to_be_bytes());
        self.hasher.update(bytes);
    }

    /// Adds the text of a prepared statement the statement executes.
    pub fn executes(mut self, text: &str) -> Self {
        self.part(b'X', text.as_bytes());
        self
    }

    /// Adds one bound parameter: its format code and value (`None` for NULL).
    pub fn param(mut self, format: i16, value: Option<&[u8]>) -> Self {
        self.hasher.update([b'F']);
        self.hasher.update(format.to_be_bytes());
        match value {
            None => self.hasher.update([b'N']),
            Some(v) => self.part(b'V', v),
        }
        self
    }

    /// Adds the result format codes a Bind asks for (they change what the client gets).
    pub fn result_formats(mut self, formats: &[i16]) -> Self {
        self.hasher.update([b'R']);
        self.hasher.update((formats.len() as u64).to_be_bytes());
        for f in formats {
            self.hasher.update(f.to_be_bytes());
        }
        self
    }

    /// The hex digest.
    pub fn finish(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_counts_and_parts_do_not_run_together() {
        let base = StatementDigest::new("DELETE FROM t WHERE id = $1");
        let a = base.clone().param(0, Some(b"7")).finish();
        assert_eq!(a, base.clone().param(0, Some(b"7")).finish(), "stable");
        assert_ne!(a, base.clone().param(0, Some(b"8")).finish(), "value");
        assert_ne!(a, base.clone().param(1, Some(b"7")).finish(), "format");
        assert_ne!(a, base.clone().param(0, None).finish(), "NULL");
        assert_ne!(a, base.clone().finish(), "no parameter");
        assert_ne!(
            base.clone()
                .param(0, Some(b"ab"))
                .param(0, Some(b""))
                .finish(),
            base.clone()
                .param(0, Some(b"a"))
                .param(0, Some(b"b"))
                .finish(),
            "boundaries"
        );
        assert_ne!(
            StatementDigest::new("EXECUTE p")
                .executes("DELETE FROM a")
                .finish(),
            StatementDigest::new("EXECUTE p")
                .executes("DELETE FROM b")
                .finish(),
            "the prepared statement behind a name"
        );
        assert_ne!(
            StatementDigest::new("DELETE FROM t").finish(),
            StatementDigest::new("DELETE FROM t ").finish(),
            "exact text"
        );
    }
}
