//! A cursor over the text forms: whitespace-separated tokens, consumed from the front.
//!
//! Each parser keeps its own grammar and error type and reads through a [`Cursor`].

/// A position in a text, with the operations every text-form parser needs.
#[derive(Clone, Debug)]
pub struct Cursor<'a> {
    /// The whole text.
    pub text: &'a [u8],
    /// The byte offset of the next unread byte.
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `text`.
    pub fn new(text: &'a str) -> Cursor<'a> {
        Cursor { text: text.as_bytes(), pos: 0 }
    }

    /// Moves past ASCII whitespace.
    pub fn skip_space(&mut self) {
        while self.text.get(self.pos).is_some_and(|c| c.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    pub fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.text.get(self.pos).copied()
    }

    /// Consumes `token` (after whitespace) if the text continues with it.
    pub fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        if self.text.get(self.pos..).is_some_and(|rest| rest.starts_with(token.as_bytes())) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    /// Whether only whitespace is left.
    pub fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }

    /// Whether the unread text starts with `prefix` (whitespace not skipped).
    pub fn starts_with(&self, prefix: &[u8]) -> bool {
        self.text.get(self.pos..).is_some_and(|rest| rest.starts_with(prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    #[test]
    fn eats_tokens_after_space() {
        let mut c = Cursor::new("  a && b ");
        assert!(c.eat("a"));
        assert!(!c.eat("||"));
        assert!(c.eat("&&"));
        assert_eq!(c.peek(), Some(b'b'));
        assert!(c.starts_with(b"b"));
        assert!(c.eat("b"));
        assert!(c.at_end());
        assert_eq!(c.pos, 9);
    }
}
