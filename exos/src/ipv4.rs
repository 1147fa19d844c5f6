//! IPv4 addresses as programs write them: `A.B.C.D` parsed and printed.

/// Parses `A.B.C.D` (four decimal bytes, nothing else).
pub fn parse(text: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = text.split('.');
    for byte in &mut out {
        *byte = parts.next()?.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// Prints an address as `A.B.C.D`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dotted(pub [u8; 4]);

impl core::fmt::Display for Dotted {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d] = self.0;
        write!(f, "{a}.{b}.{c}.{d}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn addresses_parse_and_print() {
        assert_eq!(parse("10.0.2.15"), Some([10, 0, 2, 15]));
        for bad in ["10.0.2", "10.0.2.15.1", "10.0.2.256", "a.b.c.d", "", "10..2.15"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(Dotted([192, 168, 1, 254]).to_string(), "192.168.1.254");
    }
}
