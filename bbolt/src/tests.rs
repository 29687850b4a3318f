//! The reader on small files laid out by hand as bbolt lays them out (what a real etcd never
//! writes: nested buckets, a corrupt meta, broken page links). Real etcd 3.4 files are read in
//! tests/etcd34_files.rs.

use super::*;
use crate::page::{BRANCH_PAGE, FREELIST_PAGE, HEADER_SIZE, LEAF_PAGE, MAGIC, META_PAGE};

const PS: usize = 4096;

fn header(page: &mut [u8], id: u64, flags: u16, count: u16, overflow: u32) {
    page[0..8].copy_from_slice(&id.to_le_bytes());
    page[8..10].copy_from_slice(&flags.to_le_bytes());
    page[10..12].copy_from_slice(&count.to_le_bytes());
    page[12..16].copy_from_slice(&overflow.to_le_bytes());
}

/// A leaf page of `len` bytes: `(flags, key, value)` elements.
fn leaf(id: u64, overflow: u32, len: usize, entries: &[(u32, &[u8], Vec<u8>)]) -> Vec<u8> {
    let mut page = vec![0u8; len];
    header(&mut page, id, LEAF_PAGE, entries.len() as u16, overflow);
    let mut data = HEADER_SIZE + entries.len() * 16;
    for (i, (flags, key, value)) in entries.iter().enumerate() {
        let at = HEADER_SIZE + i * 16;
        let fields = [
            *flags,
            (data - at) as u32,
            key.len() as u32,
            value.len() as u32,
        ];
        for (j, f) in fields.iter().enumerate() {
            page[at + 4 * j..at + 4 * j + 4].copy_from_slice(&f.to_le_bytes());
        }
        page[data..data + key.len()].copy_from_slice(key);
        data += key.len();
        page[data..data + value.len()].copy_from_slice(value);
        data += value.len();
    }
    page
}

fn branch(id: u64, children: &[(&[u8], u64)]) -> Vec<u8> {
    let mut page = vec![0u8; PS];
    header(&mut page, id, BRANCH_PAGE, children.len() as u16, 0);
    let mut data = HEADER_SIZE + children.len() * 16;
    for (i, (key, child)) in children.iter().enumerate() {
        let at = HEADER_SIZE + i * 16;
        page[at..at + 4].copy_from_slice(&((data - at) as u32).to_le_bytes());
        page[at + 4..at + 8].copy_from_slice(&(key.len() as u32).to_le_bytes());
        page[at + 8..at + 16].copy_from_slice(&child.to_le_bytes());
        page[data..data + key.len()].copy_from_slice(key);
        data += key.len();
    }
    page
}

fn bucket_value(root: u64, inline: Option<Vec<u8>>) -> Vec<u8> {
    let mut v = root.to_le_bytes().to_vec();
    v.extend_from_slice(&0u64.to_le_bytes());
    v.extend(inline.unwrap_or_default());
    v
}

fn meta(id: u64, txid: u64, root: u64, freelist: u64, high_water: u64) -> Vec<u8> {
    let mut page = vec![0u8; PS];
    header(&mut page, id, META_PAGE, 0, 0);
    let m = &mut page[HEADER_SIZE..];
    m[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    m[4..8].copy_from_slice(&2u32.to_le_bytes());
    m[8..12].copy_from_slice(&(PS as u32).to_le_bytes());
    m[16..24].copy_from_slice(&root.to_le_bytes());
    m[32..40].copy_from_slice(&freelist.to_le_bytes());
    m[40..48].copy_from_slice(&high_water.to_le_bytes());
    m[48..56].copy_from_slice(&txid.to_le_bytes());
    let sum = m[..56].iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    m[56..64].copy_from_slice(&sum.to_le_bytes());
    page
}

fn freelist(id: u64, ids: &[u64]) -> Vec<u8> {
    let mut page = vec![0u8; PS];
    header(&mut page, id, FREELIST_PAGE, ids.len() as u16, 0);
    for (i, free) in ids.iter().enumerate() {
        let at = HEADER_SIZE + 8 * i;
        page[at..at + 8].copy_from_slice(&free.to_le_bytes());
    }
    page
}

const BIG: usize = 6000;

/// Pages: 0-1 metas, 2 freelist (page 8 free), 3 the root leaf (an inline bucket `inl` holding
/// a nested inline bucket, and `tree`), 4 `tree`'s branch over leaves 5 and 6, whose value
/// `big` overflows into page 7; 8 free. The high water mark is 9.
fn sample() -> Vec<u8> {
    let nested = leaf(0, 0, 64, &[(0, b"x", b"y".to_vec())]);
    let inl_page = leaf(
        0,
        0,
        160,
        &[
            (0, b"a", b"1".to_vec()),
            (0, b"b", b"2".to_vec()),
            (1, b"sub", bucket_value(0, Some(nested))),
        ],
    );
    let root = leaf(
        3,
        0,
        PS,
        &[
            (1, b"inl", bucket_value(0, Some(inl_page))),
            (1, b"tree", bucket_value(4, None)),
        ],
    );
    let mut file = Vec::new();
    file.extend(meta(0, 4, 3, 2, 9));
    file.extend(meta(1, 5, 3, 2, 9));
    file.extend(freelist(2, &[8]));
    file.extend(root);
    file.extend(branch(4, &[(b"k1", 5), (b"k3", 6)]));
    file.extend(leaf(
        5,
        0,
        PS,
        &[(0, b"k1", b"v1".to_vec()), (0, b"k2", b"v2".to_vec())],
    ));
    file.extend(leaf(6, 1, 2 * PS, &[(0, b"k3", vec![7u8; BIG])]));
    file.extend(vec![0u8; PS]);
    file
}

fn entries(bucket: &Bucket<'_>) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    bucket
        .for_each(|k, v| {
            out.push((
                k.to_vec(),
                match v {
                    Value::Data(d) => Some(d.to_vec()),
                    Value::Bucket(_) => None,
                },
            ));
            Ok::<_, Error>(())
        })
        .unwrap();
    out
}

#[test]
fn walks_inline_nested_branch_and_overflow_pages_in_key_order() {
    let db = Db::from_bytes(sample()).unwrap();
    assert_eq!(db.txid(), 5);
    assert_eq!(db.size(), 9 * PS as u64);
    assert_eq!(
        entries(&db.root()),
        vec![(b"inl".to_vec(), None), (b"tree".to_vec(), None)]
    );
    let inl = db.bucket(b"inl").unwrap().unwrap();
    assert!(inl.is_inline());
    assert_eq!(
        entries(&inl),
        vec![
            (b"a".to_vec(), Some(b"1".to_vec())),
            (b"b".to_vec(), Some(b"2".to_vec())),
            (b"sub".to_vec(), None)
        ]
    );
    let sub = inl.bucket(b"sub").unwrap().unwrap();
    assert_eq!(sub.get(b"x").unwrap(), Some(&b"y"[..]));
    let tree = db.bucket(b"tree").unwrap().unwrap();
    let keys: Vec<_> = entries(&tree).into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, [b"k1".to_vec(), b"k2".to_vec(), b"k3".to_vec()]);
    assert_eq!(tree.get(b"k2").unwrap(), Some(&b"v2"[..]));
    assert_eq!(tree.get(b"k3").unwrap().map(<[u8]>::len), Some(BIG));
    assert_eq!(tree.get(b"k0").unwrap(), None);
    assert!(db.bucket(b"nope").unwrap().is_none());
    // A plain value is not a bucket.
    assert!(inl.bucket(b"a").unwrap().is_none());
    assert_eq!(db.check(), Vec::<String>::new());
}

#[test]
fn the_valid_meta_with_the_higher_txid_wins() {
    let mut file = sample();
    // Meta 1 (txid 5) points at a root of its own; break its checksum: meta 0 (txid 4) is used.
    file[PS + HEADER_SIZE + 60] ^= 0xff;
    assert_eq!(Db::from_bytes(file.clone()).unwrap().txid(), 4);
    file[HEADER_SIZE + 60] ^= 0xff;
    assert!(matches!(Db::from_bytes(file.clone()), Err(Error::Checksum)));
    file[HEADER_SIZE] ^= 0xff;
    assert!(matches!(Db::from_bytes(file), Err(Error::Invalid)));
    assert!(matches!(Db::from_bytes(vec![0; 100]), Err(Error::Invalid)));
    assert!(has_magic(&sample()));
    assert!(!has_magic(b"ETCDRSNAP1 and more bytes than a header"));
}

#[test]
fn check_reports_what_bbolt_reports() {
    // Page 8 neither reachable nor free.
    let mut file = sample();
    file[2 * PS..3 * PS].copy_from_slice(&freelist(2, &[]));
    let db = Db::from_bytes(file).unwrap();
    assert_eq!(db.check(), ["page 8: unreachable unfreed"]);

    // Leaf 5 referenced twice, page 8 freed twice and a reachable page freed.
    let mut file = sample();
    file[4 * PS..5 * PS].copy_from_slice(&branch(4, &[(b"k1", 5), (b"k2", 5), (b"k3", 6)]));
    file[2 * PS..3 * PS].copy_from_slice(&freelist(2, &[8, 8, 6]));
    let db = Db::from_bytes(file).unwrap();
    assert_eq!(
        db.check(),
        [
            "page 8: already freed",
            "page 5: multiple references",
            "page 6: reachable freed",
        ]
    );

    // A branch pointing past the file is reported, not a panic, and so is reading through it.
    let mut file = sample();
    file[4 * PS..5 * PS].copy_from_slice(&branch(4, &[(b"k1", 5), (b"k3", 600)]));
    let db = Db::from_bytes(file).unwrap();
    let errors = db.check();
    assert!(errors.contains(&"page 600: out of bounds: the file holds 9 pages".to_string()));
    let tree = db.bucket(b"tree").unwrap().unwrap();
    assert!(matches!(
        tree.for_each(|_, _| Ok::<_, Error>(())),
        Err(Error::OutOfFile { page: 600, .. })
    ));

    // A leaf's element pointing past its page.
    let mut file = sample();
    file[5 * PS + HEADER_SIZE + 12..5 * PS + HEADER_SIZE + 16]
        .copy_from_slice(&100_000u32.to_le_bytes());
    let db = Db::from_bytes(file).unwrap();
    let tree = db.bucket(b"tree").unwrap().unwrap();
    let err = tree.for_each(|_, _| Ok::<_, Error>(())).unwrap_err();
    assert_eq!(err.to_string(), "page 5: leaf value past the page's end");
}
