//! The deterministic random numbers behind retry jitter, task tokens, `States.UUID` and `States.MathRandom`.
//!
//! Each draw is derived from the execution's seed (recorded in `ExecutionStarted`) and the id of
//! the last event written, so evaluating the same step of the same history again draws the same
//! numbers: the engine stays a pure function of the history.

/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators"): tiny,
/// and good enough for jitter and identifiers that only need to differ.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// The generator for the step after event `event_id` of the execution seeded with `seed`.
    pub fn new(seed: u64, event_id: u64) -> Rng {
        Rng(seed ^ event_id.wrapping_mul(0xD1B5_4A32_D192_ED03))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A float uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        // The top 53 bits fill a double's mantissa exactly.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A version 4 UUID (RFC 9562) in its hyphenated form.
    pub fn uuid(&mut self) -> String {
        let hi = self.next_u64();
        let lo = self.next_u64();
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&hi.to_be_bytes());
        bytes[8..].copy_from_slice(&lo.to_be_bytes());
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    }
}
