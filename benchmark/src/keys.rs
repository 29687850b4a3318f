//! Key generation as etcd's benchmark does it: key number `n` is Go's `binary.PutVarint(n)`
//! (zig-zag varint) written at the start of a zeroed buffer of `--key-size` bytes.

use crate::BenchmarkError;

#[derive(Debug, Clone)]
pub struct KeySpace {
    key_size: usize,
    size: u64,
    sequential: bool,
}

impl KeySpace {
    pub fn new(key_size: usize, size: u64, sequential: bool) -> Result<KeySpace, BenchmarkError> {
        if size == 0 {
            return Err(BenchmarkError::InvalidFlag(
                "expected positive --key-space-size, got (0)".into(),
            ));
        }
        let needed = varint_len(zigzag(size - 1));
        if key_size < needed {
            return Err(BenchmarkError::InvalidFlag(format!(
                "--key-size {key_size} cannot hold {size} distinct keys (needs at least {needed} bytes)"
            )));
        }
        Ok(KeySpace {
            key_size,
            size,
            sequential,
        })
    }

    /// The key of request `index`: the next one in order with `--sequential-keys`, else a
    /// uniformly random one.
    pub fn key_for_request(&self, index: u64) -> Vec<u8> {
        let number = if self.sequential {
            index % self.size
        } else {
            rand::random_range(0..self.size)
        };
        self.key(number)
    }

    /// Key number `number % size`.
    pub fn key(&self, number: u64) -> Vec<u8> {
        encode_key(number % self.size, self.key_size)
    }

    pub fn size(&self) -> u64 {
        self.size
    }
}

fn zigzag(n: u64) -> u64 {
    // Key numbers are below 2^63, so this is Go's (n << 1) ^ (n >> 63) for a non-negative n.
    n << 1
}

fn varint_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

fn encode_key(number: u64, key_size: usize) -> Vec<u8> {
    let mut key = vec![0u8; key_size];
    let mut value = zigzag(number);
    let mut i = 0;
    while value >= 0x80 {
        key[i] = (value as u8) | 0x80;
        value >>= 7;
        i += 1;
    }
    key[i] = value as u8;
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_go_varints_padded_to_key_size() {
        let space = KeySpace::new(4, 1000, true).unwrap();
        assert_eq!(space.key(0), vec![0, 0, 0, 0]);
        assert_eq!(space.key(1), vec![2, 0, 0, 0]);
        assert_eq!(space.key(64), vec![0x80, 0x01, 0, 0]);
        assert_eq!(space.key(999), vec![0xce, 0x0f, 0, 0]);
    }

    #[test]
    fn sequential_keys_cycle_through_the_space() {
        let space = KeySpace::new(8, 3, true).unwrap();
        let keys: Vec<Vec<u8>> = (0..6).map(|i| space.key_for_request(i)).collect();
        assert_eq!(keys[0], keys[3]);
        assert_ne!(keys[0], keys[1]);
        assert_ne!(keys[1], keys[2]);
    }

    #[test]
    fn random_keys_stay_in_the_space() {
        let space = KeySpace::new(8, 5, false).unwrap();
        let allowed: Vec<Vec<u8>> = (0..5).map(|n| space.key(n)).collect();
        for i in 0..200 {
            assert!(allowed.contains(&space.key_for_request(i)));
        }
    }

    #[test]
    fn rejects_spaces_the_key_size_cannot_hold() {
        assert!(KeySpace::new(8, 0, false).is_err());
        assert!(KeySpace::new(0, 1, false).is_err());
        assert!(KeySpace::new(1, 64, false).is_ok());
        assert!(KeySpace::new(1, 65, false).is_err());
    }
}
