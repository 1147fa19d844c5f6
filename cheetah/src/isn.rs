//! Initial sequence numbers per RFC 6528: ISN = M + F(local address and port, remote address
//! and port, secret), where M is a 4 µs clock and F a keyed pseudo-random function (SipHash-2-4
//! here), so that a connection's ISN cannot be guessed from another's.

/// SipHash-2-4 of `data` under `key`.
fn siphash(key: [u64; 2], data: &[u8]) -> u64 {
    let mut v = [key[0] ^ 0x736f_6d65_7073_6575, key[1] ^ 0x646f_7261_6e64_6f6d, key[0] ^ 0x6c79_6765_6e65_7261, key[1] ^ 0x7465_6462_7974_6573];
    fn round(v: &mut [u64; 4]) {
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let m = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        v[3] ^= m;
        round(&mut v);
        round(&mut v);
        v[0] ^= m;
    }
    let mut last = [0u8; 8];
    last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    last[7] = data.len() as u8;
    let m = u64::from_le_bytes(last);
    v[3] ^= m;
    round(&mut v);
    round(&mut v);
    v[0] ^= m;
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// The ISN generator: a secret chosen at start.
#[derive(Clone, Copy, Debug)]
pub struct IsnGenerator {
    key: [u64; 2],
}

impl IsnGenerator {
    /// A generator keyed with `secret` (random at start).
    pub fn new(secret: [u64; 2]) -> IsnGenerator {
        IsnGenerator { key: secret }
    }

    /// The ISN for a connection at `micros` (µs since any fixed origin).
    pub fn isn(&self, local: ([u8; 4], u16), remote: ([u8; 4], u16), micros: u64) -> u32 {
        let mut data = [0u8; 12];
        data[..4].copy_from_slice(&local.0);
        data[4..6].copy_from_slice(&local.1.to_be_bytes());
        data[6..10].copy_from_slice(&remote.0);
        data[10..12].copy_from_slice(&remote.1.to_be_bytes());
        ((micros / 4) as u32).wrapping_add(siphash(self.key, &data) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siphash_matches_the_reference_vector() {
        // The SipHash paper's test vector: key 00..0f, message 00..0e.
        let key = [u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]), u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15])];
        let message: [u8; 15] = core::array::from_fn(|i| i as u8);
        assert_eq!(siphash(key, &message), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn isns_differ_per_tuple_and_advance_with_time() {
        let generator = IsnGenerator::new([1, 2]);
        let a = generator.isn(([10, 0, 2, 15], 80), ([10, 0, 2, 2], 4000), 0);
        let b = generator.isn(([10, 0, 2, 15], 80), ([10, 0, 2, 2], 4001), 0);
        assert_ne!(a, b);
        assert_eq!(generator.isn(([10, 0, 2, 15], 80), ([10, 0, 2, 2], 4000), 4_000), a.wrapping_add(1000));
        assert_ne!(IsnGenerator::new([1, 3]).isn(([10, 0, 2, 15], 80), ([10, 0, 2, 2], 4000), 0), a);
    }
}
