//! The hot per-user counters (last accepted step, failures, lock time, last
//! login) and their on-disk form: a fixed 256-byte file of two checksummed
//! slots written in turn, so every login updates one slot in place with a
//! single fdatasync and a crash at any instant leaves the other slot whole.
//!
//! Each slot is bound to a fingerprint of the secret it counts for, so a
//! replaced secret starts from fresh counters instead of inheriting (or
//! dodging) the old secret's replay state.

use sha2::{Digest, Sha256};

use crate::secret::Secret;

pub const SLOT_SIZE: usize = 128;
pub const FILE_SIZE: u64 = 2 * SLOT_SIZE as u64;
const MAGIC: &[u8; 8] = b"OTPGCNT1";
const CHECKSUM_AT: usize = SLOT_SIZE - 32;

/// The counters of one user for one secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// The newest time step accepted; a code must be for a later step.
    pub last_step: Option<u64>,
    /// Consecutive failures since the last success or lock expiry.
    pub failures: u32,
    /// Unix time until which the user is locked out (0: not locked).
    pub locked_until: i64,
    /// Unix time of the last successful login (0: never).
    pub last_success: i64,
    /// Unix time of the last failure (0: never).
    pub last_failure: i64,
}

/// 16 bytes that identify a secret without revealing it.
pub type Fingerprint = [u8; 16];

pub fn fingerprint(secret: &Secret) -> Fingerprint {
    let digest = Sha256::new()
        .chain_update(b"otpgate counters v1\0")
        .chain_update(secret.as_bytes())
        .finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

/// One decoded slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub generation: u64,
    pub fingerprint: Fingerprint,
    pub counters: Counters,
}

/// Encodes a slot: magic, generation, fingerprint, counters, then a SHA-256
/// of everything before it.
pub fn encode(slot: &Slot) -> [u8; SLOT_SIZE] {
    let mut out = [0u8; SLOT_SIZE];
    let c = &slot.counters;
    out[0..8].copy_from_slice(MAGIC);
    out[8..16].copy_from_slice(&slot.generation.to_le_bytes());
    out[16..32].copy_from_slice(&slot.fingerprint);
    out[32..40].copy_from_slice(&c.last_step.map_or(u64::MAX, |s| s).to_le_bytes());
    out[40..44].copy_from_slice(&c.failures.to_le_bytes());
    out[48..56].copy_from_slice(&c.locked_until.to_le_bytes());
    out[56..64].copy_from_slice(&c.last_success.to_le_bytes());
    out[64..72].copy_from_slice(&c.last_failure.to_le_bytes());
    let sum = Sha256::digest(&out[..CHECKSUM_AT]);
    out[CHECKSUM_AT..].copy_from_slice(&sum);
    out
}

/// Decodes a slot; `None` when it is blank, torn or corrupt.
pub fn decode(bytes: &[u8]) -> Option<Slot> {
    if bytes.len() != SLOT_SIZE || &bytes[0..8] != MAGIC {
        return None;
    }
    let sum = Sha256::digest(&bytes[..CHECKSUM_AT]);
    if sum.as_slice() != &bytes[CHECKSUM_AT..] {
        return None;
    }
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
    let i64_at = |at: usize| i64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
    let mut fingerprint = [0u8; 16];
    fingerprint.copy_from_slice(&bytes[16..32]);
    let last_step = u64_at(32);
    Some(Slot {
        generation: u64_at(8),
        fingerprint,
        counters: Counters {
            last_step: (last_step != u64::MAX).then_some(last_step),
            failures: u32::from_le_bytes(bytes[40..44].try_into().unwrap_or([0; 4])),
            locked_until: i64_at(48),
            last_success: i64_at(56),
            last_failure: i64_at(64),
        },
    })
}

/// What a counters file holds, read as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    /// Empty (just created): nothing counted yet.
    Fresh,
    /// The newest valid slot, and the index of the slot to write next.
    Current { slot: Slot, next_index: usize },
    /// Data present but neither slot is valid: never trusted.
    Corrupt,
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// Picks the newest valid slot of a file's bytes.
pub fn read_file(bytes: &[u8]) -> FileState {
    if bytes.is_empty() || bytes.iter().all(|&b| b == 0) {
        return FileState::Fresh;
    }
    if bytes.len() as u64 != FILE_SIZE {
        return FileState::Corrupt;
    }
    let first = decode(&bytes[..SLOT_SIZE]);
    let second = decode(&bytes[SLOT_SIZE..]);
    match (first, second) {
        (Some(a), Some(b)) if b.generation > a.generation => FileState::Current {
            slot: b,
            next_index: 0,
        },
        (Some(a), _) => FileState::Current {
            slot: a,
            next_index: 1,
        },
        (None, Some(b)) => FileState::Current {
            slot: b,
            next_index: 0,
        },
        // One slot never written and the other torn: the very first write
        // did not finish, so nothing was counted yet.
        (None, None) if is_blank(&bytes[..SLOT_SIZE]) || is_blank(&bytes[SLOT_SIZE..]) => {
            FileState::Fresh
        }
        (None, None) => FileState::Corrupt,
    }
}

/// The counters that apply to `secret`: the file's when they were written
/// for this secret, otherwise `initial` (a fresh file, or counters of a
/// secret that was replaced). `None` when the file is damaged.
pub fn for_secret(state: &FileState, secret: &Secret, initial: Counters) -> Option<Counters> {
    match state {
        FileState::Current { slot, .. } if slot.fingerprint == fingerprint(secret) => {
            Some(slot.counters)
        }
        FileState::Fresh | FileState::Current { .. } => Some(initial),
        FileState::Corrupt => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(generation: u64) -> Slot {
        Slot {
            generation,
            fingerprint: [7; 16],
            counters: Counters {
                last_step: Some(56_666_666),
                failures: 3,
                locked_until: 1_700_000_300,
                last_success: 1_700_000_000,
                last_failure: 1_700_000_100,
            },
        }
    }

    #[test]
    fn a_slot_round_trips() {
        let slot = sample(9);
        assert_eq!(decode(&encode(&slot)), Some(slot));
    }

    #[test]
    fn any_torn_or_flipped_byte_is_detected() {
        let bytes = encode(&sample(2));
        for at in 0..SLOT_SIZE {
            let mut torn = bytes;
            torn[at] ^= 0x40;
            assert_eq!(decode(&torn), None, "byte {at}");
        }
    }

    #[test]
    fn the_newest_valid_slot_wins_and_the_other_is_written_next() {
        let mut file = [0u8; 256];
        file[..128].copy_from_slice(&encode(&sample(4)));
        file[128..].copy_from_slice(&encode(&sample(5)));
        assert!(
            matches!(read_file(&file), FileState::Current { slot, next_index: 0 } if slot.generation == 5)
        );

        file[130] ^= 1;
        assert!(
            matches!(read_file(&file), FileState::Current { slot, next_index: 1 } if slot.generation == 4)
        );

        file[2] ^= 1;
        assert_eq!(read_file(&file), FileState::Corrupt);
    }

    #[test]
    fn a_torn_first_write_counts_as_fresh() {
        let mut file = [0u8; 256];
        file[..60].copy_from_slice(&encode(&sample(1))[..60]);
        assert_eq!(read_file(&file), FileState::Fresh);
    }

    #[test]
    fn empty_is_fresh_and_odd_sizes_are_corrupt() {
        assert_eq!(read_file(&[]), FileState::Fresh);
        assert_eq!(read_file(&[0; 256]), FileState::Fresh);
        assert_eq!(read_file(&[1; 100]), FileState::Corrupt);
    }

    #[test]
    fn counters_of_another_secret_are_not_used() {
        let secret = Secret::from_bytes(vec![1; 20], 128).unwrap();
        let mut slot = sample(1);
        let state = FileState::Current {
            slot,
            next_index: 1,
        };
        assert_eq!(
            for_secret(&state, &secret, Counters::default()),
            Some(Counters::default())
        );
        slot.fingerprint = fingerprint(&secret);
        let state = FileState::Current {
            slot,
            next_index: 1,
        };
        assert_eq!(
            for_secret(&state, &secret, Counters::default()),
            Some(slot.counters)
        );
    }
}
