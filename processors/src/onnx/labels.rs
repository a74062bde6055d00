//! The codes of a `LabelEncoder` whose string input tributary feeds as integers (see
//! [`super::graph`]): the lookup the node would have made, made before the model runs.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::graph::LabelInput;
use super::tensor::Values;

/// A small, fast hash for short keys (such as `PU_DO` pairs): a multiply-rotate over 8-byte
/// words, then a finalizer that mixes every bit into the low ones. The keys come from the model
/// file, not from input data, and a lookup only reads the table, so a hash that an adversary
/// could collide only slows lookups of unknown strings.
#[derive(Default)]
pub struct WordHasher(u64);

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(word) ^ (rest.len() as u64) << 56);
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        // MurmurHash3's finalizer: the multiply-rotate leaves the low bits, which pick the
        // bucket, depending on the keys' low bytes only ("130_205" and "131_205" would collide).
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

impl WordHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// A string input's codes.
#[derive(Clone, Debug)]
pub struct LabelCodes {
    codes: HashMap<String, i64, BuildHasherDefault<WordHasher>>,
    default: i64,
}

impl LabelCodes {
    /// The codes of `label`'s encoder.
    pub fn new(label: &LabelInput) -> Self {
        LabelCodes { codes: label.codes.iter().cloned().collect(), default: label.default }
    }

    /// The code of `key`, as the node gives it.
    pub fn code(&self, key: &str) -> i64 {
        self.codes.get(key).copied().unwrap_or(self.default)
    }

    /// The codes of string values, in their order; integers are codes already (a caller that
    /// knows its strings looked them up once, as `ride_duration` does for its zone pairs).
    ///
    /// # Errors
    /// The values are neither strings nor codes.
    pub fn encode(&self, values: Values) -> Result<Values, String> {
        match values {
            Values::String(v) => Ok(Values::Int64(v.iter().map(|s| self.code(s)).collect())),
            Values::Interned(v) => Ok(Values::Int64(v.iter().map(|s| self.code(s)).collect())),
            codes @ Values::Int64(_) => Ok(codes),
            _ => Err("takes strings".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_get_their_codes_and_unknown_ones_the_default() {
        let label = LabelInput {
            input: "PU_DO".into(),
            tensor: "pair_index".into(),
            codes: vec![("130_205".into(), 0), ("1_10".into(), 7), ("a-key-longer-than-eight-bytes".into(), 3)],
            default: -1,
        };
        let codes = LabelCodes::new(&label);
        let values = Values::String(vec![
            "1_10".into(),
            "130_205".into(),
            "13000_1".into(),
            String::new(),
            "a-key-longer-than-eight-bytes".into(),
        ]);
        let Values::Int64(encoded) = codes.encode(values).unwrap() else { panic!("not integers") };
        assert_eq!(encoded, [7, 0, -1, -1, 3]);
        let Values::Int64(encoded) = codes.encode(Values::Interned(vec!["130_205", "1_1"])).unwrap() else {
            panic!("not integers")
        };
        assert_eq!(encoded, [0, -1]);
        assert!(codes.encode(Values::Float(vec![1.0])).is_err());
        let Values::Int64(passed) = codes.encode(Values::Int64(vec![7, 0])).unwrap() else { panic!("not integers") };
        assert_eq!(passed, [7, 0]);
    }
}
