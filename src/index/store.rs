//! Compact storage of a snapshot's indicators.
//!
//! A record is one stored indicator, in input order. Its value and id live
//! in two byte arenas addressed by `u32` offsets. Its source, package id,
//! title and times are shared: they form a [`Meta`] entry that many records
//! of one feed or package point at. One 16-byte [`Record`] stores the
//! offsets, the meta entry, the type and the next record of the same index
//! key, so a lookup reads one cache line for all of them. A record costs
//! those 16 bytes plus its value and id bytes, against about 300 bytes for
//! a cloned [`Indicator`] with its heap strings.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use chrono::{DateTime, Utc};
use ipnet::IpNet;

use super::indicator::{
    HashValue, Indicator, IndicatorRef, IndicatorType, IndicatorValue, ValueRef,
};

/// The maximum number of records: the type takes the top 3 bits of
/// [`Record::meta_and_kind`].
pub(crate) const MAX_RECORDS: usize = (1 << 29) - 1;

/// Marks a missing package id or title in [`Meta`], and the end of a key's
/// chain in [`Record::next`].
const NONE: u32 = u32::MAX;

/// Provenance that many records share: source name, package id, title and
/// times.
/// Strings are positions in [`Store::strings`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Meta {
    source: u32,
    package_id: u32,
    title: u32,
    first_seen: Option<DateTime<Utc>>,
    valid_until: Option<DateTime<Utc>>,
    /// The source matches domains on the exact host only.
    exact_only: bool,
}

/// Arena offsets of a record's value and id, its [`Meta`] entry and type,
/// and the next record with the same index key. The value and id end where
/// the next record's start.
#[derive(Debug, Clone, Copy)]
struct Record {
    value_start: u32,
    id_start: u32,
    /// The [`Meta`] position in the low 29 bits, the position of the type
    /// in [`IndicatorType::ALL`] in the top 3.
    meta_and_kind: u32,
    next: u32,
}

impl Default for Record {
    fn default() -> Self {
        Record {
            value_start: 0,
            id_start: 0,
            meta_and_kind: 0,
            next: NONE,
        }
    }
}

impl Record {
    fn meta(&self) -> usize {
        (self.meta_and_kind & MAX_RECORDS as u32) as usize
    }

    fn kind(&self) -> IndicatorType {
        IndicatorType::ALL
            .get((self.meta_and_kind >> 29) as usize)
            .copied()
            .unwrap_or(IndicatorType::Domain)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Store {
    /// One per record, then one that stores only the ends of the arenas.
    records: Vec<Record>,
    /// Values in the form of [`encode_value`].
    values: Vec<u8>,
    ids: String,
    metas: Vec<Meta>,
    strings: Vec<Box<str>>,
}

impl Store {
    pub(crate) fn len(&self) -> usize {
        self.records.len().saturating_sub(1)
    }

    /// Returns the record's value in the form of [`encode_value`].
    #[inline]
    pub(crate) fn value_bytes(&self, record: u32) -> &[u8] {
        let record = record as usize;
        match (self.records.get(record), self.records.get(record + 1)) {
            (Some(this), Some(next)) => self
                .values
                .get(this.value_start as usize..next.value_start as usize),
            _ => None,
        }
        .unwrap_or(&[])
    }

    fn id(&self, record: usize) -> &str {
        match (self.records.get(record), self.records.get(record + 1)) {
            (Some(this), Some(next)) => {
                self.ids.get(this.id_start as usize..next.id_start as usize)
            }
            _ => None,
        }
        .unwrap_or("")
    }

    fn string(&self, position: u32) -> Option<&str> {
        self.strings.get(position as usize).map(|s| &**s)
    }

    fn meta(&self, record: u32) -> Option<&Meta> {
        let record = self.records.get(record as usize)?;
        self.metas.get(record.meta())
    }

    /// Calls `visit` with `first` and every later record of the same key,
    /// in input order.
    #[inline]
    pub(crate) fn each_of_key(&self, first: u32, mut visit: impl FnMut(u32)) {
        let mut record = first;
        // Each record links only to a later one, so the chain ends.
        while let Some(this) = self.records.get(record as usize) {
            visit(record);
            record = this.next;
        }
    }

    /// Calls `visit` with every record of type `kind`, in input order.
    pub(crate) fn each_of_kind(&self, kind: IndicatorType, mut visit: impl FnMut(u32)) {
        for (record, entry) in self.records.iter().take(self.len()).enumerate() {
            if entry.kind() == kind {
                visit(record as u32);
            }
        }
    }

    /// Checks whether `record` is a domain of a source that matches the
    /// exact host only.
    pub(crate) fn exact_only(&self, record: u32) -> bool {
        self.meta(record).is_some_and(|meta| meta.exact_only)
    }

    /// Returns the indicator of `record`. A record number that is not in the
    /// store gives an indicator with empty fields.
    pub(crate) fn get(&self, record: u32) -> IndicatorRef<'_> {
        let kind = self
            .records
            .get(record as usize)
            .map_or(IndicatorType::Domain, Record::kind);
        let meta = self.meta(record);
        IndicatorRef {
            value: decode_value(kind, self.value_bytes(record)),
            source: meta.and_then(|m| self.string(m.source)).unwrap_or(""),
            id: self.id(record as usize),
            package_id: meta.and_then(|m| self.string(m.package_id)),
            title: meta.and_then(|m| self.string(m.title)),
            first_seen: meta.and_then(|m| m.first_seen),
            valid_until: meta.and_then(|m| m.valid_until),
        }
    }

    /// Counts records per (source name, type).
    pub(crate) fn counts(&self) -> Vec<(&str, IndicatorType, usize)> {
        let kinds = IndicatorType::ALL.len();
        let mut per_meta_and_kind = vec![0usize; self.metas.len() * kinds];
        for record in self.records.iter().take(self.len()) {
            let slot = record.meta() * kinds + (record.meta_and_kind >> 29) as usize;
            if let Some(count) = per_meta_and_kind.get_mut(slot) {
                *count += 1;
            }
        }
        let mut counts = Vec::new();
        for (slot, count) in per_meta_and_kind.into_iter().enumerate() {
            let source = self.metas.get(slot / kinds).map(|m| m.source);
            if let (true, Some(source)) = (count > 0, source) {
                let source = self.string(source).unwrap_or("");
                counts.push((source, IndicatorType::ALL[slot % kinds], count));
            }
        }
        counts
    }

    /// Bytes held by the store, for memory reports.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.records.capacity() * std::mem::size_of::<Record>()
            + self.values.capacity()
            + self.ids.capacity()
            + self.metas.capacity() * std::mem::size_of::<Meta>()
            + self.strings.iter().map(|s| s.len() + 16).sum::<usize>()
    }
}

/// Builds a [`Store`] one record at a time, interning the shared fields.
pub(crate) struct StoreBuilder<'a> {
    store: Store,
    string_positions: HashMap<&'a str, u32>,
    meta_positions: HashMap<Meta, u32>,
    /// The last indicator interned and its entry: consecutive indicators of
    /// one feed usually share it, and comparing is cheaper than hashing.
    last: Option<(&'a Indicator, u32)>,
    /// The last record of each key that has more than one, by first record.
    chain_ends: HashMap<u32, u32>,
}

impl<'a> StoreBuilder<'a> {
    /// Starts a store of `records` records with `value_bytes` and
    /// `id_bytes` of arena, so the arenas are allocated once.
    pub(crate) fn new(records: usize, value_bytes: usize, id_bytes: usize) -> StoreBuilder<'a> {
        let mut store = Store::default();
        store.records.reserve_exact(records + 1);
        store.values.reserve_exact(value_bytes);
        store.ids.reserve_exact(id_bytes);
        store.records.push(Record::default());
        StoreBuilder {
            store,
            string_positions: HashMap::new(),
            meta_positions: HashMap::new(),
            last: None,
            chain_ends: HashMap::new(),
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Returns the [`Meta`] entry of `indicator`, adding it if it is new.
    /// `exact_only` must follow from the source name.
    pub(crate) fn intern_meta(&mut self, indicator: &'a Indicator, exact_only: bool) -> u32 {
        if let Some((last, position)) = self.last {
            if same_meta(last, indicator) {
                return position;
            }
        }
        let meta = Meta {
            source: self.intern_string(&indicator.source),
            package_id: indicator
                .package_id
                .as_deref()
                .map_or(NONE, |p| self.intern_string(p)),
            title: indicator
                .title
                .as_deref()
                .map_or(NONE, |t| self.intern_string(t)),
            first_seen: indicator.first_seen,
            valid_until: indicator.valid_until,
            exact_only,
        };
        let next = self.store.metas.len() as u32;
        let position = *self.meta_positions.entry(meta).or_insert_with_key(|meta| {
            self.store.metas.push(meta.clone());
            next
        });
        self.last = Some((indicator, position));
        position
    }

    fn intern_string(&mut self, text: &'a str) -> u32 {
        let next = self.store.strings.len() as u32;
        *self.string_positions.entry(text).or_insert_with(|| {
            self.store.strings.push(text.into());
            next
        })
    }

    /// Appends a record and returns its number, or `None` when an arena
    /// would pass `u32::MAX` bytes or the store is full ([`MAX_RECORDS`]).
    pub(crate) fn push(&mut self, indicator: &Indicator, meta: u32) -> Option<u32> {
        let store = &mut self.store;
        let record = store.len();
        if record >= MAX_RECORDS {
            return None;
        }
        encode_value(&indicator.value, &mut store.values);
        store.ids.push_str(&indicator.id);
        let value_end = u32::try_from(store.values.len()).ok()?;
        let id_end = u32::try_from(store.ids.len()).ok()?;
        let kind = IndicatorType::ALL
            .iter()
            .position(|k| *k == indicator.kind())
            .unwrap_or(0) as u32;
        // The last entry stores the arena ends so far, and it becomes this
        // record.
        if let Some(last) = store.records.last_mut() {
            last.meta_and_kind = (kind << 29) | (meta & MAX_RECORDS as u32);
        }
        store.records.push(Record {
            value_start: value_end,
            id_start: id_end,
            ..Record::default()
        });
        Some(record as u32)
    }

    /// Links `record` at the end of the chain of the key whose first record
    /// is `first`.
    pub(crate) fn append_to_key(&mut self, first: u32, record: u32) {
        let end = self.chain_ends.insert(first, record).unwrap_or(first);
        if let Some(end) = self.store.records.get_mut(end as usize) {
            end.next = record;
        }
    }

    pub(crate) fn finish(mut self) -> Store {
        // Trims the arenas when a push failed half-way.
        let end = self.store.records.last().copied().unwrap_or_default();
        self.store.values.truncate(end.value_start as usize);
        self.store.ids.truncate(end.id_start as usize);
        self.store.metas.shrink_to_fit();
        self.store
    }
}

fn same_meta(a: &Indicator, b: &Indicator) -> bool {
    a.source == b.source
        && a.package_id == b.package_id
        && a.title == b.title
        && a.first_seen == b.first_seen
        && a.valid_until == b.valid_until
}

/// Appends the stored form of `value`: an IP network as its prefix length
/// and address octets (5 or 17 bytes), a digest as its bytes (16, 20 or 32),
/// text as its UTF-8 bytes.
pub(crate) fn encode_value(value: &IndicatorValue, out: &mut Vec<u8>) {
    match value {
        IndicatorValue::Ip(IpNet::V4(net)) => {
            out.push(net.prefix_len());
            out.extend_from_slice(&net.addr().octets());
        }
        IndicatorValue::Ip(IpNet::V6(net)) => {
            out.push(net.prefix_len());
            out.extend_from_slice(&net.addr().octets());
        }
        IndicatorValue::Hash(digest) => out.extend_from_slice(digest.as_bytes()),
        IndicatorValue::Domain(text) | IndicatorValue::Url(text) | IndicatorValue::Email(text) => {
            out.extend_from_slice(text.as_bytes())
        }
    }
}

/// Reads a value written by [`encode_value`]. Bytes that no value of `kind`
/// encodes to give an empty domain.
fn decode_value(kind: IndicatorType, bytes: &[u8]) -> ValueRef<'_> {
    let text = || std::str::from_utf8(bytes).unwrap_or("");
    let decoded = match kind {
        IndicatorType::Ip => decode_ip(bytes).map(ValueRef::Ip),
        IndicatorType::Hash => decode_digest(bytes).map(ValueRef::Hash),
        IndicatorType::Domain => Some(ValueRef::Domain(text())),
        IndicatorType::Url => Some(ValueRef::Url(text())),
        IndicatorType::Email => Some(ValueRef::Email(text())),
    };
    decoded.unwrap_or(ValueRef::Domain(""))
}

/// Reads a stored IP network: prefix length, then the address octets.
pub(crate) fn decode_ip(bytes: &[u8]) -> Option<IpNet> {
    let (&len, octets) = bytes.split_first()?;
    let addr = match octets.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(octets).ok()?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(octets).ok()?)),
        _ => return None,
    };
    IpNet::new(addr, len).ok()
}

fn decode_digest(bytes: &[u8]) -> Option<HashValue> {
    Some(match bytes.len() {
        16 => HashValue::Md5(bytes.try_into().ok()?),
        20 => HashValue::Sha1(bytes.try_into().ok()?),
        32 => HashValue::Sha256(bytes.try_into().ok()?),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(kind: IndicatorType, text: &str) -> IndicatorValue {
        let value = IndicatorValue::parse(kind, text).unwrap();
        let mut bytes = Vec::new();
        encode_value(&value, &mut bytes);
        decode_value(kind, &bytes).to_value()
    }

    #[test]
    fn values_round_trip() {
        for (kind, text) in [
            (IndicatorType::Ip, "192.0.2.7"),
            (IndicatorType::Ip, "198.51.100.0/24"),
            (IndicatorType::Ip, "2001:db8::/32"),
            (IndicatorType::Domain, "evil.example.net"),
            (IndicatorType::Url, "http://evil.example.net/a?b=c"),
            (IndicatorType::Email, "bad@evil.example.net"),
            (IndicatorType::Hash, "d41d8cd98f00b204e9800998ecf8427e"),
            (
                IndicatorType::Hash,
                "da39a3ee5e6b4b0d3255bfef95601890afd80709",
            ),
            (
                IndicatorType::Hash,
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
        ] {
            let value = IndicatorValue::parse(kind, text).unwrap();
            assert_eq!(round_trip(kind, text), value, "{text}");
        }
    }

    #[test]
    fn invalid_bytes_decode_to_empty_domain() {
        assert_eq!(
            decode_value(IndicatorType::Ip, &[1, 2]),
            ValueRef::Domain("")
        );
        assert_eq!(
            decode_value(IndicatorType::Hash, &[0; 3]),
            ValueRef::Domain("")
        );
    }

    #[test]
    fn builder_shares_meta() {
        let mut a = Indicator::new(
            IndicatorValue::parse(IndicatorType::Ip, "192.0.2.1").unwrap(),
            "otx",
            "1",
        );
        a.package_id = Some("pkg".into());
        let mut b = a.clone();
        b.id = "2".into();
        let mut c = a.clone();
        c.source = "misp".into();

        let mut builder = StoreBuilder::new(3, 15, 3);
        let metas = [
            builder.intern_meta(&a, false),
            builder.intern_meta(&b, false),
            builder.intern_meta(&c, false),
        ];
        assert_eq!(metas, [0, 0, 1]);
        assert_eq!(builder.intern_meta(&a, false), 0);
        for (indicator, meta) in [&a, &b, &c].into_iter().zip(metas) {
            builder.push(indicator, meta);
        }
        builder.append_to_key(0, 2);

        let store = builder.finish();
        let mut chain = Vec::new();
        store.each_of_key(0, |record| chain.push(record));
        assert_eq!(chain, [0, 2]);
        assert_eq!(store.len(), 3);
        assert_eq!(store.get(1).to_indicator(), b);
        assert_eq!(store.get(2).to_indicator(), c);
        assert_eq!(store.get(2).source, "misp");
        assert_eq!(store.get(0).package_id, Some("pkg"));
    }
}
