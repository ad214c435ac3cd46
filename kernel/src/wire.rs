//! The wire format: splitting ZeroMQ multipart frames into a Jupyter message and
//! back, and signing/verifying them with HMAC-SHA256.
//!
//! A message on the wire is `identities…, <IDS|MSG>, signature, header,
//! parent_header, metadata, content, buffers…`. The signature is the lowercase
//! hex HMAC of the four JSON frames exactly as they travel.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::{HashSet, VecDeque};

pub const DELIMITER: &[u8] = b"<IDS|MSG>";

type HmacSha256 = Hmac<Sha256>;
/// Length of an HMAC-SHA256 digest.
const HMAC_BYTES: usize = 32;

/// Why an incoming multipart message was refused. Refused messages are logged
/// and dropped: never executed, never answered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("no <IDS|MSG> delimiter among {0} frames")]
    NoDelimiter(usize),
    #[error("only {0} frames after the delimiter; a message needs signature, header, parent_header, metadata and content")]
    TooFewFrames(usize),
    #[error("signature is missing or does not match")]
    BadSignature,
    #[error("frame {frame} is not valid JSON: {reason}")]
    BadJson { frame: &'static str, reason: String },
    #[error("duplicate signature: this message was already received (a replay)")]
    Replayed,
}

/// Signs and verifies messages with the connection file's key. An empty key
/// means no signing: signatures are sent empty and not checked.
#[derive(Clone)]
pub struct Signer {
    key: Option<Vec<u8>>,
}

impl Signer {
    pub fn new(key: &str) -> Self {
        Signer {
            key: (!key.is_empty()).then(|| key.as_bytes().to_vec()),
        }
    }

    fn mac(&self) -> Option<HmacSha256> {
        self.key
            .as_ref()
            .map(|k| HmacSha256::new_from_slice(k).expect("HMAC accepts keys of any length"))
    }

    /// Hex signature of the four JSON frames.
    pub fn sign(&self, parts: [&[u8]; 4]) -> String {
        match self.mac() {
            None => String::new(),
            Some(mut mac) => {
                for p in parts {
                    mac.update(p);
                }
                hex::encode(mac.finalize().into_bytes())
            }
        }
    }

    /// False when the key is empty: nothing is signed or checked.
    pub fn is_signing(&self) -> bool {
        self.key.is_some()
    }

    /// Constant-time check of a received signature.
    pub fn verify(&self, signature: &[u8], parts: [&[u8]; 4]) -> bool {
        let Some(mut mac) = self.mac() else {
            return true;
        };
        // Only the spelling `sign` makes (and jupyter_client compares): 64
        // lowercase hex digits. hex::decode also takes upper case, which would
        // let one message travel under many signatures and slip past a history
        // of digests seen. Checks the form only, not the value: no timing leak.
        let lower_hex = |b: &u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
        if signature.len() != 2 * HMAC_BYTES || !signature.iter().all(lower_hex) {
            return false;
        }
        let Ok(expected) = hex::decode(signature) else {
            return false;
        };
        for p in parts {
            mac.update(p);
        }
        mac.verify_slice(&expected).is_ok()
    }
}

/// A message as raw frames, split at the delimiter, signature checked.
#[derive(Debug, Clone, PartialEq)]
pub struct RawMessage {
    pub identities: Vec<Vec<u8>>,
    pub header: serde_json::Value,
    pub parent_header: serde_json::Value,
    pub metadata: serde_json::Value,
    pub content: serde_json::Value,
    pub buffers: Vec<Vec<u8>>,
}

impl RawMessage {
    /// Parses and verifies frames as received from a ROUTER socket.
    pub fn decode(frames: Vec<Vec<u8>>, signer: &Signer) -> Result<RawMessage, WireError> {
        let n = frames.len();
        let delim = frames
            .iter()
            .position(|f| f.as_slice() == DELIMITER)
            .ok_or(WireError::NoDelimiter(n))?;
        let after = n - delim - 1;
        if after < 5 {
            return Err(WireError::TooFewFrames(after));
        }
        let mut it = frames.into_iter();
        let identities: Vec<Vec<u8>> = it.by_ref().take(delim).collect();
        it.next(); // delimiter
        let signature = it.next().unwrap_or_default();
        let header = it.next().unwrap_or_default();
        let parent = it.next().unwrap_or_default();
        let metadata = it.next().unwrap_or_default();
        let content = it.next().unwrap_or_default();
        if !signer.verify(&signature, [&header, &parent, &metadata, &content]) {
            return Err(WireError::BadSignature);
        }
        let json = |frame: &'static str, bytes: &[u8]| {
            serde_json::from_slice(bytes).map_err(|e| WireError::BadJson {
                frame,
                reason: e.to_string(),
            })
        };
        Ok(RawMessage {
            identities,
            header: json("header", &header)?,
            parent_header: json("parent_header", &parent)?,
            metadata: json("metadata", &metadata)?,
            content: json("content", &content)?,
            buffers: it.collect(),
        })
    }

    /// Serialises and signs, ready to send as a multipart message.
    pub fn encode(&self, signer: &Signer) -> Vec<Vec<u8>> {
        let header = self.header.to_string().into_bytes();
        let parent = self.parent_header.to_string().into_bytes();
        let metadata = self.metadata.to_string().into_bytes();
        let content = self.content.to_string().into_bytes();
        let signature = signer.sign([&header, &parent, &metadata, &content]);
        let mut frames = self.identities.clone();
        frames.push(DELIMITER.to_vec());
        frames.push(signature.into_bytes());
        frames.extend([header, parent, metadata, content]);
        frames.extend(self.buffers.iter().cloned());
        frames
    }
}

/// Signatures of the messages already accepted in this session, so that a
/// replayed message is refused, as jupyter_client's `Session` does with its
/// `digest_history`. Bounded: past `capacity` the oldest are forgotten
/// (jupyter_client keeps 2^16 and culls at random; oldest-first is simpler
/// and as safe, since a message's header carries its date and msg_id).
#[derive(Debug)]
pub struct DigestHistory {
    seen: HashSet<Vec<u8>>,
    order: VecDeque<Vec<u8>>,
    capacity: usize,
}

impl DigestHistory {
    pub const DEFAULT_CAPACITY: usize = 1 << 16;

    pub fn new(capacity: usize) -> DigestHistory {
        DigestHistory {
            seen: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Records a digest; false when it was already there.
    pub fn insert(&mut self, digest: &[u8]) -> bool {
        if self.seen.contains(digest) {
            return false;
        }
        if self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(digest.to_vec());
        self.order.push_back(digest.to_vec());
        true
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

impl Default for DigestHistory {
    fn default() -> Self {
        DigestHistory::new(Self::DEFAULT_CAPACITY)
    }
}

impl RawMessage {
    /// [`RawMessage::decode`], and then refuses a message whose signature was
    /// seen before in this session. Only verified signatures are recorded
    /// (unsigned junk cannot fill the history); with an empty key nothing is
    /// signed, so nothing is checked. The digest is kept as bytes, so the
    /// same signature in upper-case hex is still a duplicate.
    pub fn decode_once(
        frames: Vec<Vec<u8>>,
        signer: &Signer,
        seen: &mut DigestHistory,
    ) -> Result<RawMessage, WireError> {
        let digest = frames
            .iter()
            .position(|f| f.as_slice() == DELIMITER)
            .and_then(|d| frames.get(d + 1))
            .and_then(|sig| hex::decode(sig).ok());
        let decoded = RawMessage::decode(frames, signer);
        let verified = matches!(decoded, Ok(_) | Err(WireError::BadJson { .. }));
        if let (true, true, Some(digest)) = (verified, signer.is_signing(), digest) {
            if !seen.insert(&digest) {
                return Err(WireError::Replayed);
            }
        }
        decoded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> RawMessage {
        RawMessage {
            identities: vec![b"client-1".to_vec()],
            header: json!({"msg_id": "a", "msg_type": "kernel_info_request"}),
            parent_header: json!({}),
            metadata: json!({}),
            content: json!({"code": "1 + 1"}),
            buffers: vec![],
        }
    }

    #[test]
    fn round_trip_keeps_every_frame() {
        let signer = Signer::new("secret");
        let frames = sample().encode(&signer);
        assert_eq!(frames[1], DELIMITER);
        assert_eq!(frames[2].len(), 64, "hex of a 32-byte HMAC");
        assert_eq!(RawMessage::decode(frames, &signer).unwrap(), sample());
    }

    #[test]
    fn known_signature_vector() {
        // HMAC-SHA256(key="key", "The quick brown fox jumps over the lazy dog")
        let s = Signer::new("key");
        let sig = s.sign([b"The quick brown ", b"fox jumps over ", b"the lazy ", b"dog"]);
        assert_eq!(
            sig,
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn tampered_content_is_refused() {
        let signer = Signer::new("secret");
        let mut frames = sample().encode(&signer);
        let last = frames.len() - 1;
        frames[last] = br#"{"code": "rm -rf"}"#.to_vec();
        assert_eq!(RawMessage::decode(frames, &signer), Err(WireError::BadSignature));
    }

    #[test]
    fn wrong_key_and_missing_signature_are_refused() {
        let frames = sample().encode(&Signer::new("one"));
        assert_eq!(
            RawMessage::decode(frames.clone(), &Signer::new("two")),
            Err(WireError::BadSignature)
        );
        let mut unsigned = frames;
        unsigned[2] = Vec::new();
        assert_eq!(
            RawMessage::decode(unsigned, &Signer::new("one")),
            Err(WireError::BadSignature)
        );
        let mut garbage = sample().encode(&Signer::new("one"));
        garbage[2] = b"zz-not-hex".to_vec();
        assert_eq!(
            RawMessage::decode(garbage, &Signer::new("one")),
            Err(WireError::BadSignature)
        );
        let mut upper = sample().encode(&Signer::new("one"));
        upper[2] = upper[2].to_ascii_uppercase();
        assert_eq!(
            RawMessage::decode(upper, &Signer::new("one")),
            Err(WireError::BadSignature),
            "the same digest in upper case is another signature"
        );
    }

    #[test]
    fn empty_key_means_no_signing() {
        let signer = Signer::new("");
        let frames = sample().encode(&signer);
        assert!(frames[2].is_empty());
        let mut with_any_sig = frames.clone();
        with_any_sig[2] = b"whatever".to_vec();
        assert!(RawMessage::decode(with_any_sig, &signer).is_ok());
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        let signer = Signer::new("");
        assert_eq!(
            RawMessage::decode(vec![b"x".to_vec()], &signer),
            Err(WireError::NoDelimiter(1))
        );
        assert_eq!(
            RawMessage::decode(vec![DELIMITER.to_vec(), b"".to_vec(), b"{}".to_vec()], &signer),
            Err(WireError::TooFewFrames(2))
        );
        let bad = vec![
            DELIMITER.to_vec(),
            b"".to_vec(),
            b"{not json".to_vec(),
            b"{}".to_vec(),
            b"{}".to_vec(),
            b"{}".to_vec(),
        ];
        assert!(matches!(
            RawMessage::decode(bad, &signer),
            Err(WireError::BadJson { frame: "header", .. })
        ));
    }
}

#[cfg(test)]
mod digest_tests {
    use super::*;
    use serde_json::json;

    fn frames(signer: &Signer, id: &str) -> Vec<Vec<u8>> {
        RawMessage {
            identities: vec![],
            header: json!({"msg_id": id, "msg_type": "kernel_info_request"}),
            parent_header: json!({}),
            metadata: json!({}),
            content: json!({}),
            buffers: vec![],
        }
        .encode(signer)
    }

    #[test]
    fn a_replayed_message_is_refused() {
        let signer = Signer::new("k");
        let mut seen = DigestHistory::default();
        let f = frames(&signer, "a");
        assert!(RawMessage::decode_once(f.clone(), &signer, &mut seen).is_ok());
        assert_eq!(RawMessage::decode_once(f.clone(), &signer, &mut seen), Err(WireError::Replayed));
        // The same digest spelt in upper case is no second valid signature.
        let mut upper = f;
        upper[1] = upper[1].to_ascii_uppercase();
        assert_eq!(RawMessage::decode_once(upper, &signer, &mut seen), Err(WireError::BadSignature));
        assert!(RawMessage::decode_once(frames(&signer, "b"), &signer, &mut seen).is_ok());
    }

    #[test]
    fn bad_signatures_are_not_recorded_and_empty_keys_not_checked() {
        let signer = Signer::new("k");
        let mut seen = DigestHistory::default();
        let wrong = frames(&Signer::new("other"), "a");
        assert_eq!(RawMessage::decode_once(wrong, &signer, &mut seen), Err(WireError::BadSignature));
        assert!(seen.is_empty());
        let open = Signer::new("");
        let f = frames(&open, "a");
        assert!(RawMessage::decode_once(f.clone(), &open, &mut seen).is_ok());
        assert!(RawMessage::decode_once(f, &open, &mut seen).is_ok());
    }

    #[test]
    fn the_history_is_bounded_oldest_first() {
        let mut h = DigestHistory::new(3);
        for d in [b"1", b"2", b"3", b"4"] {
            assert!(h.insert(d));
        }
        assert_eq!(h.len(), 3);
        assert!(h.insert(b"1"), "the oldest was forgotten");
        assert!(!h.insert(b"4"));
    }
}
