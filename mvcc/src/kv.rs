//! The stored value and the watch event, wire-compatible with etcd's `mvccpb`.

/// `mvccpb.KeyValue`: what the key table stores at each revision.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// Revision of the put that created the key (0 in a deletion).
    #[prost(int64, tag = "2")]
    pub create_revision: i64,
    /// Revision of the last change.
    #[prost(int64, tag = "3")]
    pub mod_revision: i64,
    /// 1 on creation, +1 per put, reset by a delete.
    #[prost(int64, tag = "4")]
    pub version: i64,
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
    /// Attached lease, 0 for none.
    #[prost(int64, tag = "6")]
    pub lease: i64,
}

/// `mvccpb.Event.EventType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum EventType {
    Put = 0,
    Delete = 1,
}

/// `mvccpb.Event`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Event {
    #[prost(enumeration = "EventType", tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub kv: Option<KeyValue>,
    #[prost(message, optional, tag = "3")]
    pub prev_kv: Option<KeyValue>,
}

impl Event {
    pub fn new(event_type: EventType, kv: KeyValue) -> Self {
        Self {
            r#type: event_type as i32,
            kv: Some(kv),
            prev_kv: None,
        }
    }

    pub fn is_put(&self) -> bool {
        self.r#type == EventType::Put as i32
    }

    /// The key the event is about (empty only for a malformed event).
    pub fn key(&self) -> &[u8] {
        self.kv.as_ref().map_or(&[], |kv| &kv.key)
    }

    /// The revision at which the event happened.
    pub fn revision(&self) -> i64 {
        self.kv.as_ref().map_or(0, |kv| kv.mod_revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn key_value_encodes_with_mvccpb_field_numbers() {
        let kv = KeyValue {
            key: b"k".to_vec(),
            create_revision: 2,
            mod_revision: 3,
            version: 1,
            value: b"v".to_vec(),
            lease: 7,
        };
        // Field tags 1..6 in order, zero values omitted (as gogoproto does).
        assert_eq!(
            kv.encode_to_vec(),
            vec![0x0a, 1, b'k', 0x10, 2, 0x18, 3, 0x20, 1, 0x2a, 1, b'v', 0x30, 7]
        );
        let tombstone = KeyValue {
            key: b"k".to_vec(),
            ..Default::default()
        };
        assert_eq!(tombstone.encode_to_vec(), vec![0x0a, 1, b'k']);
        let ev = Event::new(EventType::Delete, tombstone);
        assert_eq!(ev.encode_to_vec(), vec![0x08, 1, 0x12, 3, 0x0a, 1, b'k']);
    }
}
