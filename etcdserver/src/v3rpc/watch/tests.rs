use super::*;

fn event(size: usize) -> api::mvccpb::Event {
    api::mvccpb::Event {
        r#type: 0,
        kv: Some(api::mvccpb::KeyValue {
            key: b"k".to_vec(),
            value: vec![b'v'; size],
            ..Default::default()
        }),
        prev_kv: None,
    }
}

#[test]
fn fragments_split_as_etcd() {
    let response = pb::WatchResponse {
        watch_id: 3,
        events: (0..10).map(|_| event(100)).collect(),
        ..Default::default()
    };
    let whole = response.encoded_len();
    assert_eq!(
        fragments(response.clone(), whole + 1),
        vec![response.clone()]
    );
    let pieces = fragments(response.clone(), 350);
    assert!(pieces.len() >= 4, "{} pieces", pieces.len());
    for piece in &pieces {
        assert!(piece.encoded_len() < 350);
        assert_eq!(piece.watch_id, 3);
    }
    assert!(pieces[..pieces.len() - 1].iter().all(|p| p.fragment));
    assert!(!pieces.last().unwrap().fragment);
    let joined: Vec<_> = pieces.into_iter().flat_map(|p| p.events).collect();
    assert_eq!(joined, response.events);
    // An event larger than the limit goes alone rather than not at all.
    let big = pb::WatchResponse {
        events: vec![event(1000), event(10)],
        ..Default::default()
    };
    let pieces = fragments(big, 500);
    assert_eq!(
        pieces.iter().map(|p| p.events.len()).collect::<Vec<_>>(),
        [1, 1]
    );
}
