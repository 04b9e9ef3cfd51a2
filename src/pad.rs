//! One pad on the backend: its opaque name and its sealed format.
//!
//! A pad holds `pad_size` bytes of the address space. Its object stores only
//! the prefix up to the highest byte ever written (the rest reads as zeros),
//! so a pad shared by a few small items costs little bandwidth.
//!
//! **Format 3 (written now): segments.** The prefix is cut into segments of
//! [`SEGMENT`] bytes (the last one shorter; an empty pad is one empty
//! segment), each sealed as a frame of its own, laid end to end:
//!
//! `"AHP3" | version (u64 LE) | last (u8: 1 for the last segment) | nonce | ciphertext | tag`
//!
//! Every frame but the last has the same length, so segment `i` lies at
//! `i * FRAME` of the object, and a reader of a few bytes fetches and opens
//! only the frames under them (one ranged request). Each frame's associated
//! data binds the store id, the pad id, the version, the segment's index
//! and whether it is the last (as age's STREAM construction does): a frame
//! moved within the pad, taken from another pad or from another version of
//! this one, or a pad cut short or extended past its last segment, fails
//! to open. The header is in the clear (the version too, so a reader can
//! open a frame without fetching anything else) and bound by the
//! associated data. A reader rejects a version older than the one it
//! expects (rollback), and frames of mixed versions. The pad's digest, the
//! name of a piece filling it (see `crypto::item_digest`), is a hash of
//! its frames' tags ([`PadTag`]).
//!
//! **Format 2 (read only): one frame.** `"AHP2" | version (u64 LE) | nonce |
//! ciphertext | tag`, the whole prefix sealed at once, its tag the pad's
//! digest. Pads of stores written before format 3 stay so until rewritten.

use serde::{Deserialize, Serialize};

use crate::crypto::{self, StoreKeys};
use crate::error::{Error, Result};

/// Format 2's magic, and its header: magic, version.
const MAGIC: &[u8; 4] = b"AHP2";
const HEADER_LEN: usize = 4 + 8;

/// The random identity of a pad; its object name reveals nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PadId(pub [u8; 16]);

impl PadId {
    pub fn random() -> Self {
        PadId(crypto::os_random())
    }

    pub const PREFIX: &'static str = "p/";

    /// The backend object name, `p/<32 hex digits>`: where the pad lives,
    /// or where overwrites are not atomic its even versions (see
    /// [`PadId::object_name_for`]).
    pub fn object_name(&self) -> String {
        let mut name = String::with_capacity(2 + 32 + ODD_SUFFIX.len());
        name.push_str(Self::PREFIX);
        for byte in self.0 {
            name.push_str(&format!("{byte:02x}"));
        }
        name
    }

    /// The object of the pad's odd versions, `p/<32 hex digits>.odd`, where
    /// overwrites are not atomic.
    pub fn odd_object_name(&self) -> String {
        self.object_name() + ODD_SUFFIX
    }

    /// The object that holds `version` of this pad. Where an interrupted
    /// overwrite may leave neither the old object nor the new one (Garage
    /// drops both when the writer's connection closes as it commits, see
    /// docs/s3.md), versions alternate between two objects (`alternating`),
    /// so a write never replaces the object of the version the index
    /// names; elsewhere there is one object.
    pub fn object_name_for(&self, version: u64, alternating: bool) -> String {
        if alternating && version % 2 == 1 {
            self.odd_object_name()
        } else {
            self.object_name()
        }
    }

    /// The pad id of a listed object name (either of a pad's objects), if
    /// it is one.
    pub fn from_object_name(name: &str) -> Option<Self> {
        let hex = name.strip_prefix(Self::PREFIX)?;
        let hex = hex.strip_suffix(ODD_SUFFIX).unwrap_or(hex);
        if hex.len() != 32 {
            return None;
        }
        let mut id = [0u8; 16];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(PadId(id))
    }
}

/// The suffix of the object holding a pad's odd versions (see
/// [`PadId::object_name_for`]).
const ODD_SUFFIX: &str = ".odd";

/// Bytes of plaintext per segment: a reader of `s` bytes fetches at most
/// `s + 2 * SEGMENT` (a partial segment at either end). 64 KiB measured
/// best (docs/architecture.md, "Pads sealed in segments").
pub const SEGMENT: u64 = 64 << 10;
const SEGMENT_MAGIC: &[u8; 4] = b"AHP3";
/// A frame's cleartext header: magic, version, last flag.
const FRAME_HEADER: usize = 4 + 8 + 1;
/// Bytes a frame adds to its segment.
pub const FRAME_OVERHEAD: usize = FRAME_HEADER + crypto::SEAL_OVERHEAD;
/// Bytes of every frame but the last.
pub const FRAME: u64 = SEGMENT + FRAME_OVERHEAD as u64;

/// What stands for a pad's whole content as a piece's digest: the object's
/// tag (format 2) or a hash of its frames' tags (format 3). Authentic once
/// the pad opened.
pub type PadTag = crypto::AuthTag;

fn associated_data(store_id: &[u8; 16], pad: PadId, version: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(11 + 16 + 16 + 8);
    aad.extend_from_slice(b"anthill pad");
    aad.extend_from_slice(store_id);
    aad.extend_from_slice(&pad.0);
    aad.extend_from_slice(&version.to_le_bytes());
    aad
}

/// The associated data of segment `index` of a format 3 pad.
fn segment_associated_data(
    store_id: &[u8; 16],
    pad: PadId,
    version: u64,
    index: u64,
    last: bool,
) -> [u8; 19 + 16 + 16 + 8 + 8 + 1] {
    let mut aad = [0u8; 19 + 16 + 16 + 8 + 8 + 1];
    let mut at = 0;
    for part in [
        &b"anthill pad segment"[..],
        store_id,
        &pad.0,
        &version.to_le_bytes(),
        &index.to_le_bytes(),
        &[u8::from(last)],
    ] {
        aad[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    aad
}

/// The digest of a format 3 pad's frames, from their tags in order.
fn segment_tags_digest(tags: &[u8]) -> PadTag {
    let mut hasher = blake3::Hasher::new_derive_key("anthill 2026-12 pad segment tags");
    hasher.update(tags);
    let hash = hasher.finalize();
    hash.as_bytes()[..16].try_into().expect("16 of 32 bytes")
}

/// Seals `plaintext` (a prefix of the pad's content) as version `version`.
pub fn encode(
    keys: &StoreKeys,
    store_id: &[u8; 16],
    pad: PadId,
    version: u64,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_into(keys, store_id, pad, version, plaintext, &mut out)?;
    Ok(out)
}

/// [`encode`] into `out` (emptied first), reusing its allocation. Returns
/// the pad's [`PadTag`].
pub fn encode_into(
    keys: &StoreKeys,
    store_id: &[u8; 16],
    pad: PadId,
    version: u64,
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<PadTag> {
    encode_segments(
        keys,
        store_id,
        pad,
        version,
        plaintext,
        SEGMENT as usize,
        out,
    )
}

/// Format 3 with segments of `segment` bytes (the format's is [`SEGMENT`];
/// others only to measure).
#[doc(hidden)]
pub fn encode_segments(
    keys: &StoreKeys,
    store_id: &[u8; 16],
    pad: PadId,
    version: u64,
    plaintext: &[u8],
    segment: usize,
    out: &mut Vec<u8>,
) -> Result<PadTag> {
    out.clear();
    let count = plaintext.len().div_ceil(segment).max(1);
    out.reserve(plaintext.len() + count * FRAME_OVERHEAD);
    let mut tags = Vec::with_capacity(count * 16);
    for index in 0..count {
        let from = index * segment;
        let chunk = &plaintext[from.min(plaintext.len())..(from + segment).min(plaintext.len())];
        let last = index + 1 == count;
        out.extend_from_slice(SEGMENT_MAGIC);
        out.extend_from_slice(&version.to_le_bytes());
        out.push(u8::from(last));
        let aad = segment_associated_data(store_id, pad, version, index as u64, last);
        tags.extend_from_slice(&crypto::seal_into(keys.pads(), &aad, chunk, out)?);
    }
    Ok(segment_tags_digest(&tags))
}

/// Seals `plaintext` in format 2, as anthill did before segments: only to
/// make the pads of an older store in tests.
#[doc(hidden)]
pub fn encode_format2(
    keys: &StoreKeys,
    store_id: &[u8; 16],
    pad: PadId,
    version: u64,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(HEADER_LEN + crypto::SEAL_OVERHEAD + plaintext.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    let aad = associated_data(store_id, pad, version);
    crypto::seal_into(keys.pads(), &aad, plaintext, &mut out)?;
    Ok(out)
}

/// The largest pad object of a store with `pad_size`-byte pads: a full pad
/// sealed, in either format. Reads of pad objects are capped at it.
pub fn max_object_len(pad_size: u64) -> u64 {
    let frames = pad_size.div_ceil(SEGMENT).max(1);
    let format3 = pad_size.saturating_add(frames.saturating_mul(FRAME_OVERHEAD as u64));
    format3.max(pad_size.saturating_add((HEADER_LEN + crypto::SEAL_OVERHEAD) as u64))
}

/// Whether `len` bytes at `offset` are the whole of a pad of `pad_size`.
pub fn fills_pad(offset: u64, len: u64, pad_size: u64) -> bool {
    offset == 0 && len == pad_size
}

/// A pad object opened: its version, plaintext prefix and [`PadTag`].
#[derive(Debug)]
pub struct OpenedPad {
    pub version: u64,
    pub plaintext: Vec<u8>,
    pub tag: PadTag,
}

/// Opens a pad object: its version and plaintext prefix. Fails with
/// [`Error::Integrity`] if it does not authenticate, or if its version is
/// older than `min_version` (a rollback), or longer than a pad.
pub fn decode(
    keys: &StoreKeys,
    store_id: &[u8; 16],
    pad: PadId,
    min_version: u64,
    pad_size: u64,
    object: &[u8],
) -> Result<(u64, Vec<u8>)> {
    let opened = open(keys, store_id, pad, min_version, pad_size, object.to_vec())?;
    Ok((opened.version, opened.plaintext))
}

/// [`decode`], decrypting in place (the object's buffer becomes the
/// plaintext), and with the pad's tag: a pad of either format.
pub fn open(
    keys: &StoreKeys,
    store_id: &[u8; 16],
    pad: PadId,
    min_version: u64,
    pad_size: u64,
    object: Vec<u8>,
) -> Result<OpenedPad> {
    if object.starts_with(SEGMENT_MAGIC) {
        let (version, plaintext, tags) = open_frames(
            keys,
            store_id,
            pad,
            FramesAt {
                first: 0,
                ends_object: true,
            },
            min_version,
            pad_size,
            object,
        )?;
        return Ok(OpenedPad {
            version,
            plaintext,
            tag: segment_tags_digest(&tags),
        });
    }
    let tag = crypto::auth_tag(&object);
    let (version, plaintext) = open_format2(keys, store_id, pad, min_version, pad_size, object)?;
    Ok(OpenedPad {
        version,
        plaintext,
        tag: tag.expect("an opened object ends with its tag"),
    })
}

fn open_format2(
    keys: &StoreKeys,
    store_id: &[u8; 16],
    pad: PadId,
    min_version: u64,
    pad_size: u64,
    object: Vec<u8>,
) -> Result<(u64, Vec<u8>)> {
    let name = pad.object_name();
    if object.len() < HEADER_LEN || &object[..4] != MAGIC {
        return Err(Error::integrity(format!(
            "pad {name} is not an anthill pad"
        )));
    }
    let version = u64::from_le_bytes(object[4..12].try_into().expect("8 header bytes"));
    let aad = associated_data(store_id, pad, version);
    let plaintext = crypto::open_owned(
        keys.pads(),
        &aad,
        object,
        HEADER_LEN,
        &format!("pad {name}"),
    )?;
    check_version(pad, version, min_version)?;
    if plaintext.len() as u64 > pad_size {
        return Err(Error::integrity(format!("pad {name} is larger than a pad")));
    }
    Ok((version, plaintext))
}

fn check_version(pad: PadId, version: u64, min_version: u64) -> Result<()> {
    if version < min_version {
        return Err(Error::integrity(format!(
            "pad {} was rolled back to version {version}; the index expects at least {min_version}",
            pad.object_name()
        )));
    }
    Ok(())
}

/// The frames of a format 3 pad that hold plaintext bytes `range`, and the
/// index of the first: what a ranged read fetches (the object range may
/// reach past the object's end; a backend cuts it there).
pub fn frames_of(range: std::ops::Range<u64>) -> (u64, std::ops::Range<u64>) {
    let first = range.start / SEGMENT;
    let last = range
        .end
        .max(range.start + 1)
        .div_ceil(SEGMENT)
        .max(first + 1);
    (first, first * FRAME..last * FRAME)
}

/// Whether `fetched` (bytes of a pad object at a frame boundary) begins a
/// format 3 frame; a format 2 pad read at that offset does not, but for a
/// chance of 2^-32.
pub fn is_frame(fetched: &[u8]) -> bool {
    fetched.starts_with(SEGMENT_MAGIC)
}

/// Where some frames lie in their pad object.
#[derive(Debug, Clone, Copy)]
pub struct FramesAt {
    /// The index of the first.
    pub first: u64,
    /// Whether the object ends with them (a whole object, or a ranged read
    /// the backend cut short): then the last of them must be the pad's
    /// last segment.
    pub ends_object: bool,
}

/// The version and last flag in a frame's clear header.
fn frame_header(frame: &[u8], what: &impl Fn() -> String) -> Result<(u64, bool)> {
    if frame.len() < FRAME_OVERHEAD || !frame.starts_with(SEGMENT_MAGIC) {
        return Err(Error::integrity(format!(
            "{} is not an anthill pad segment (or is truncated)",
            what()
        )));
    }
    let version = u64::from_le_bytes(frame[4..12].try_into().expect("8 bytes"));
    match frame[12] {
        0 => Ok((version, false)),
        1 => Ok((version, true)),
        _ => Err(Error::integrity(format!("{} has a bad header", what()))),
    }
}

/// Opens consecutive frames of a format 3 pad (`fetched`, beginning with
/// frame `at.first`), in place: the plaintext of those segments (it
/// begins at byte `at.first * SEGMENT` of the pad's prefix), their version,
/// and their tags. Fails with [`Error::Integrity`] if a frame does not
/// authenticate as that pad's segment of that index, if the frames are of
/// several versions or older than `min_version`, if the last segment is
/// missing from an object's end or followed by anything, or if they reach
/// past `pad_size`.
pub fn open_frames(
    keys: &StoreKeys,
    store_id: &[u8; 16],
    pad: PadId,
    at: FramesAt,
    min_version: u64,
    pad_size: u64,
    mut fetched: Vec<u8>,
) -> Result<(u64, Vec<u8>, Vec<u8>)> {
    let name = pad.object_name();
    let frame = FRAME as usize;
    let mut version = None;
    let mut tags = Vec::with_capacity(fetched.len().div_ceil(frame) * 16);
    let mut plaintext_len = 0;
    let mut start = 0;
    let mut index = at.first;
    loop {
        let end = (start + frame).min(fetched.len());
        let what = || format!("pad {name} segment {index}");
        let (frame_version, last) = frame_header(&fetched[start..end], &what)?;
        if *version.get_or_insert(frame_version) != frame_version {
            return Err(Error::integrity(format!(
                "{} is of version {frame_version}, the segments before it of {}: \
                 the pad was modified or rolled back",
                what(),
                version.unwrap_or_default()
            )));
        }
        let at_end = end == fetched.len();
        if last && !at_end {
            return Err(Error::integrity(format!(
                "pad {name} goes on after its last segment ({index})"
            )));
        }
        if at_end && !last && (at.ends_object || end - start < frame) {
            return Err(Error::integrity(format!(
                "pad {name} ends without its last segment: it was cut short"
            )));
        }
        let aad = segment_associated_data(store_id, pad, frame_version, index, last);
        tags.extend_from_slice(&fetched[end - 16..end]);
        let opened = crypto::open_within(
            keys.pads(),
            &aad,
            &mut fetched,
            plaintext_len,
            start + FRAME_HEADER..end,
            &what(),
        )?;
        if !last && opened as u64 != SEGMENT {
            return Err(Error::integrity(format!(
                "{} is not a whole segment",
                what()
            )));
        }
        plaintext_len += opened;
        let reach = (at.first * SEGMENT).saturating_add(plaintext_len as u64);
        if reach > pad_size {
            return Err(Error::integrity(format!("pad {name} is larger than a pad")));
        }
        if at_end {
            break;
        }
        start = end;
        index += 1;
    }
    let version = version.expect("at least one frame");
    check_version(pad, version, min_version)?;
    fetched.truncate(plaintext_len);
    Ok((version, fetched, tags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_others() {
        let id = PadId::random();
        assert_eq!(PadId::from_object_name(&id.object_name()), Some(id));
        assert_eq!(PadId::from_object_name(&id.odd_object_name()), Some(id));
        assert_eq!(id.object_name_for(3, true), id.odd_object_name());
        assert_eq!(id.object_name_for(4, true), id.object_name());
        assert_eq!(id.object_name_for(3, false), id.object_name());
        assert_eq!(PadId::from_object_name("p/xyz"), None);
        assert_eq!(PadId::from_object_name("j/0000"), None);
    }

    #[test]
    fn pads_detect_swap_and_rollback() {
        let keys = StoreKeys::derive(b"s", &[1; 16]);
        let (a, b) = (PadId::random(), PadId::random());
        let v3 = encode(&keys, &[1; 16], a, 3, b"abc").unwrap();
        assert_eq!(
            decode(&keys, &[1; 16], a, 3, 64, &v3).unwrap(),
            (3, b"abc".to_vec())
        );
        assert!(
            decode(&keys, &[1; 16], b, 0, 64, &v3).is_err(),
            "swapped pad"
        );
        assert!(
            decode(&keys, &[1; 16], a, 4, 64, &v3).is_err(),
            "rolled back"
        );
        let mut forged = v3.clone();
        forged[4] = 9; // claim a newer version
        assert!(decode(&keys, &[1; 16], a, 0, 64, &forged).is_err());
    }

    fn opens(object: &[u8], pad: PadId, min_version: u64) -> Result<OpenedPad> {
        let keys = StoreKeys::derive(b"s", &[1; 16]);
        open(&keys, &[1; 16], pad, min_version, 1 << 20, object.to_vec())
    }

    /// A pad of `segments` segments (the last one half full).
    fn sealed(pad: PadId, version: u64, segments: u64, fill: u8) -> (Vec<u8>, Vec<u8>) {
        let keys = StoreKeys::derive(b"s", &[1; 16]);
        let len = (segments * SEGMENT - SEGMENT / 2) as usize;
        let plaintext: Vec<u8> = (0..len).map(|i| (i % 241) as u8 ^ fill).collect();
        (
            encode(&keys, &[1; 16], pad, version, &plaintext).unwrap(),
            plaintext,
        )
    }

    fn frame(object: &[u8], index: u64) -> &[u8] {
        let start = (index * FRAME) as usize;
        &object[start..(start + FRAME as usize).min(object.len())]
    }

    #[test]
    fn segmented_pads_round_trip_whole_and_by_frames() {
        let pad = PadId::random();
        let (object, plaintext) = sealed(pad, 7, 3, 0);
        assert_eq!(object.len(), plaintext.len() + 3 * FRAME_OVERHEAD);
        let opened = opens(&object, pad, 7).unwrap();
        assert_eq!(
            (opened.version, opened.plaintext.len()),
            (7, plaintext.len())
        );
        assert!(opened.plaintext == plaintext);
        let keys = StoreKeys::derive(b"s", &[1; 16]);
        // The middle segment alone, then the last two as a cut read.
        let (first, range) = frames_of(SEGMENT + 5..SEGMENT + 10);
        assert_eq!((first, range.clone()), (1, FRAME..2 * FRAME));
        let at = FramesAt {
            first,
            ends_object: false,
        };
        let middle = object[range.start as usize..range.end as usize].to_vec();
        let (version, bytes, _) =
            open_frames(&keys, &[1; 16], pad, at, 7, 1 << 20, middle).unwrap();
        assert_eq!(version, 7);
        assert!(bytes[..] == plaintext[SEGMENT as usize..2 * SEGMENT as usize]);
        let at = FramesAt {
            first: 1,
            ends_object: true,
        };
        let tail = object[FRAME as usize..].to_vec();
        let (_, bytes, _) = open_frames(&keys, &[1; 16], pad, at, 7, 1 << 20, tail).unwrap();
        assert!(bytes[..] == plaintext[SEGMENT as usize..]);
        // An empty pad is one empty segment.
        let empty = encode(&keys, &[1; 16], pad, 0, &[]).unwrap();
        assert_eq!(opens(&empty, pad, 0).unwrap().plaintext, b"");
    }

    #[test]
    fn segmented_pads_detect_every_tampering() {
        let (pad, other) = (PadId::random(), PadId::random());
        let (object, _) = sealed(pad, 5, 3, 0);
        let (older, _) = sealed(pad, 4, 3, 0);
        let (foreign, _) = sealed(other, 5, 3, 0);
        let join = |frames: &[&[u8]]| frames.concat();
        let mut flipped = object.clone();
        flipped[FRAME as usize + 100] ^= 1;
        let swapped = join(&[frame(&object, 1), frame(&object, 0), frame(&object, 2)]);
        let from_other = join(&[frame(&object, 0), frame(&foreign, 1), frame(&object, 2)]);
        let from_older = join(&[frame(&object, 0), frame(&older, 1), frame(&object, 2)]);
        let dropped_last = join(&[frame(&object, 0), frame(&object, 1)]);
        let appended = join(&[&object, frame(&object, 1)]);
        let mut claims_last = object.clone();
        claims_last[FRAME as usize + 12] = 1;
        for (what, bad) in [
            ("flipped", flipped),
            ("swapped within", swapped),
            ("from another pad", from_other),
            ("from an older version", from_older),
            ("last dropped", dropped_last),
            ("one appended", appended),
            ("flag forged", claims_last),
        ] {
            assert!(
                matches!(opens(&bad, pad, 5), Err(Error::Integrity(_))),
                "{what}"
            );
        }
        // Whole older versions are rollbacks; another pad's object fails.
        assert!(matches!(opens(&older, pad, 5), Err(Error::Integrity(_))));
        assert!(matches!(opens(&object, other, 0), Err(Error::Integrity(_))));
        // A ranged read of a segment from the older version, expecting 5.
        let keys = StoreKeys::derive(b"s", &[1; 16]);
        let at = FramesAt {
            first: 1,
            ends_object: false,
        };
        let old_frame = frame(&older, 1).to_vec();
        assert!(open_frames(&keys, &[1; 16], pad, at, 5, 1 << 20, old_frame).is_err());
        // A ranged read of the last frame cut short of its end.
        let at = FramesAt {
            first: 2,
            ends_object: true,
        };
        let last = frame(&object, 2);
        let cut = last[..last.len() - 1].to_vec();
        assert!(open_frames(&keys, &[1; 16], pad, at, 5, 1 << 20, cut).is_err());
    }

    #[test]
    fn format2_pads_still_open() {
        let keys = StoreKeys::derive(b"s", &[1; 16]);
        let pad = PadId::random();
        let old = encode_format2(&keys, &[1; 16], pad, 3, b"abc").unwrap();
        let opened = opens(&old, pad, 3).unwrap();
        assert_eq!((opened.version, &opened.plaintext[..]), (3, &b"abc"[..]));
        assert_eq!(Some(opened.tag), crypto::auth_tag(&old));
        assert!(!is_frame(&old));
    }
}
