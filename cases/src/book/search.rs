//! Finding a case by what a caller or a dispatcher knows of it, and its repeats.
//!
//! [`SearchQuery`]: the text of `GET /api/cases?q=` checked and folded; [`SearchKeys`]: what of a
//! record it is matched against (its id and its reports' ids, address, reporter's name, phone
//! digits, place), and the rules of a match ([`SearchKeys::matches`]); [`SearchIndex`]: those
//! keys of every record, in memory or archived, kept as records change, so a query costs the
//! cases it finds and not the cases the book holds.
//!
//! **Folding.** Letters are lowercased, full-width ASCII (`ＳＲ１２３`) made ASCII, and
//! everything but letters and digits (any script: 朝阳区 stays) dropped, so `SR-2026-0042`,
//! `sr 2026 0042` and `sr20260042` are one key. A phone is its digits only.
//!
//! **Matching.** A query matches a record when its folded text starts an id (case, report or
//! source id, whole or any of its `-`/`:`/space separated parts), or is inside its address or
//! reporter's name; or, for a query of digits only (once folded: `138-0013 8000` is) with at
//! least [`MIN_PHONE_DIGITS`], when those digits are the reporter's phone, start it or end it
//! ("callers read the last digits").
//!
//! **The index.** Ids and their parts in an ordered set (a prefix is a range); phones forwards
//! and reversed (a suffix is a prefix of the reversed digits); addresses and names by character
//! bigrams (any script, no word breaks needed for Chinese), whose candidates are checked against
//! the record's keys; places in an R-tree and addresses folded whole, for repeats. Each record is
//! a small number (a `u32`) in these sets, its id and keys kept once. About 1.7 KB a case (see
//! `docs/BENCHMARKS.md`), for every case ever opened: the bucket is never scanned to search.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};

use jiff::{SignedDuration, Timestamp};
use linkbus_matching::geodesy;
use linkbus_wire::CaseRecord;
use rstar::RTree;
use rstar::primitives::GeomWithData;

/// The longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 64;
/// The fewest letters or digits a query has once folded.
pub const MIN_QUERY_CHARS: usize = 2;
/// The fewest digits of a phone query (the last four of a number are often all a caller reads).
pub const MIN_PHONE_DIGITS: usize = 4;

/// How near another report is a repeat of a case, metres.
pub const REPEAT_RADIUS_M: f64 = 50.0;
/// How many days apart a repeat may be from the case, either way.
pub const REPEAT_DAYS: i64 = 90;

/// A record's place in a listing: newest first, then by id.
pub(super) type ListKey = (Reverse<Timestamp>, String);

/// A record's number in the index's sets.
type Doc = u32;
/// A character bigram of a folded text.
type Gram = (char, char);
/// A record's place: a unit vector (see [`geodesy::unit_vector`]) and its number.
type Placed = GeomWithData<[f64; 3], Doc>;

/// A search as asked (`q`), checked and folded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// The text folded (see the module's doc).
    folded: String,
    /// Its digits, when it reads as a phone number.
    digits: Option<String>,
}

impl SearchQuery {
    /// Checks and folds `q`: at most [`MAX_QUERY_CHARS`] characters, at least
    /// [`MIN_QUERY_CHARS`] letters or digits.
    pub fn parse(q: &str) -> Result<Self, String> {
        let chars = q.chars().count();
        if chars > MAX_QUERY_CHARS {
            return Err(format!("{chars} characters; at most {MAX_QUERY_CHARS}"));
        }
        let folded = fold(q);
        if folded.chars().count() < MIN_QUERY_CHARS {
            return Err(format!("needs at least {MIN_QUERY_CHARS} letters or digits"));
        }
        let digits =
            Some(folded.clone()).filter(|f| f.len() >= MIN_PHONE_DIGITS && f.chars().all(|c| c.is_ascii_digit()));
        Ok(Self { folded, digits })
    }

    /// The text folded.
    pub fn folded(&self) -> &str {
        &self.folded
    }
}

/// `s` lowercased, full-width ASCII made ASCII, with only its letters and digits.
pub(super) fn fold(s: &str) -> String {
    s.chars().map(half_width).filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// The ASCII digits of `s` (full-width ones too).
fn phone_digits(s: &str) -> String {
    s.chars().map(half_width).filter(char::is_ascii_digit).collect()
}

/// A full-width ASCII form (U+FF01–U+FF5E) as its ASCII character; any other unchanged.
fn half_width(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    }
}

/// The bigrams of a folded text.
fn bigrams(folded: &str) -> impl Iterator<Item = Gram> + '_ {
    folded.chars().zip(folded.chars().skip(1))
}

/// What of a record a search is matched against, folded.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct SearchKeys {
    /// The case id, and its reports' event and source ids.
    ids: Vec<String>,
    /// The parts of those ids (split at what is not a letter or digit), two characters or more.
    parts: Vec<String>,
    /// The first report's address.
    address: Option<String>,
    /// The reporter's name.
    name: Option<String>,
    /// The reporter's phone, digits only.
    phone: Option<String>,
    /// Where it was reported (a unit vector), unless it is a broadcast over an area.
    place: Option<[f64; 3]>,
}

impl SearchKeys {
    /// The keys of a record.
    pub(super) fn of(r: &CaseRecord) -> Self {
        let raw: Vec<&str> = std::iter::once(r.case_id.as_str())
            .chain(std::iter::once(r.case.source_id.as_str()))
            .chain(r.reports.iter().flat_map(|rep| [rep.report_id.as_str(), rep.source_id.as_str()]))
            .collect();
        let mut ids: Vec<String> = raw.iter().map(|id| fold(id)).filter(|id| !id.is_empty()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut parts: Vec<String> = raw
            .iter()
            .flat_map(|id| id.split(|c: char| !c.is_alphanumeric()))
            .map(fold)
            .filter(|part| part.chars().count() >= MIN_QUERY_CHARS && !ids.contains(part))
            .collect();
        parts.sort_unstable();
        parts.dedup();
        let reporter = r.case.reporter.as_ref();
        Self {
            ids,
            parts,
            address: r.case.address.as_deref().map(fold).filter(|a| !a.is_empty()),
            name: reporter.and_then(|c| c.name.as_deref()).map(fold).filter(|n| !n.is_empty()),
            phone: reporter.and_then(|c| c.phone.as_deref()).map(phone_digits).filter(|p| !p.is_empty()),
            place: r.case.area.is_none().then(|| geodesy::unit_vector(r.case.location.lon, r.case.location.lat)),
        }
    }

    /// Whether `q` finds this record (the rules are the module's doc).
    pub(super) fn matches(&self, q: &SearchQuery) -> bool {
        let starts = |key: &String| key.starts_with(&q.folded);
        let inside = |text: &Option<String>| text.as_ref().is_some_and(|t| t.contains(&q.folded));
        let phone = match (&q.digits, &self.phone) {
            (Some(digits), Some(phone)) => phone.starts_with(digits.as_str()) || phone.ends_with(digits.as_str()),
            _ => false,
        };
        self.ids.iter().any(starts)
            || self.parts.iter().any(starts)
            || inside(&self.address)
            || inside(&self.name)
            || phone
    }

    /// The texts searched by bigrams.
    fn texts(&self) -> impl Iterator<Item = &str> {
        self.address.iter().chain(&self.name).map(String::as_str)
    }
}

/// What the index holds of one record.
#[derive(Debug, Clone)]
struct Entry {
    listing: ListKey,
    keys: SearchKeys,
}

/// The search keys of every record of the book, in memory or archived.
#[derive(Debug, Default)]
pub(super) struct SearchIndex {
    /// Each record's number, by case id.
    numbers: HashMap<String, Doc>,
    /// Each number's record (a record is never removed: the book keeps every case). Boxed, so
    /// that when the vector grows it moves pointers, not every record's keys, while the book's
    /// index is locked.
    entries: Vec<Option<Box<Entry>>>,
    /// Ids and their parts.
    ids: BTreeSet<(String, Doc)>,
    /// Phones' digits.
    phones: BTreeSet<(String, Doc)>,
    /// Phones' digits reversed.
    phones_reversed: BTreeSet<(String, Doc)>,
    /// Addresses' and names' bigrams.
    grams: HashMap<Gram, HashSet<Doc>>,
    /// Addresses, whole.
    addresses: HashMap<String, HashSet<Doc>>,
    /// Places.
    places: RTree<Placed>,
}

impl SearchIndex {
    /// Records the keys of the case listed at `listing` (replacing what it held for that case).
    pub(super) fn set(&mut self, listing: &ListKey, keys: SearchKeys) {
        let id = &listing.1;
        let doc = match self.numbers.get(id) {
            Some(&doc) => {
                // Most changes of a case (accepted, resolved, rated…) leave its keys as they were.
                if let Some(Some(held)) = self.entries.get_mut(doc as usize)
                    && held.keys == keys
                {
                    held.listing = listing.clone();
                    return;
                }
                self.unlink(doc);
                doc
            }
            None => {
                let doc = Doc::try_from(self.entries.len()).unwrap_or(Doc::MAX);
                self.entries.push(None);
                self.numbers.insert(id.clone(), doc);
                doc
            }
        };
        for key in keys.ids.iter().chain(&keys.parts) {
            self.ids.insert((key.clone(), doc));
        }
        if let Some(phone) = &keys.phone {
            self.phones.insert((phone.clone(), doc));
            self.phones_reversed.insert((phone.chars().rev().collect(), doc));
        }
        for gram in keys.texts().flat_map(bigrams) {
            self.grams.entry(gram).or_default().insert(doc);
        }
        if let Some(address) = &keys.address {
            self.addresses.entry(address.clone()).or_default().insert(doc);
        }
        if let Some(at) = keys.place {
            self.places.insert(Placed::new(at, doc));
        }
        self.entries[doc as usize] = Some(Box::new(Entry { listing: listing.clone(), keys }));
    }

    /// Takes a record's keys out of the sets (its entry stays).
    fn unlink(&mut self, doc: Doc) {
        let Some(Some(entry)) = self.entries.get(doc as usize) else { return };
        let keys = &entry.keys;
        for key in keys.ids.iter().chain(&keys.parts) {
            self.ids.remove(&(key.clone(), doc));
        }
        if let Some(phone) = &keys.phone {
            self.phones.remove(&(phone.clone(), doc));
            self.phones_reversed.remove(&(phone.chars().rev().collect(), doc));
        }
        for gram in keys.texts().flat_map(bigrams) {
            if let Some(docs) = self.grams.get_mut(&gram) {
                docs.remove(&doc);
                if docs.is_empty() {
                    self.grams.remove(&gram);
                }
            }
        }
        if let Some(address) = &keys.address
            && let Some(docs) = self.addresses.get_mut(address)
        {
            docs.remove(&doc);
            if docs.is_empty() {
                self.addresses.remove(address);
            }
        }
        if let Some(at) = keys.place {
            self.places.remove(&Placed::new(at, doc));
        }
    }

    /// How many records it holds.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.numbers.len()
    }

    fn entry(&self, doc: Doc) -> Option<&Entry> {
        self.entries.get(doc as usize).and_then(Option::as_deref)
    }

    /// The folded address of the case `id`, if it has one.
    pub(super) fn address(&self, id: &str) -> Option<&str> {
        self.numbers.get(id).and_then(|d| self.entry(*d)).and_then(|e| e.keys.address.as_deref())
    }

    /// The listing places of the records `q` finds, in listing order (newest first).
    pub(super) fn find(&self, q: &SearchQuery) -> Vec<ListKey> {
        let mut candidates: HashSet<Doc> = prefixed(&self.ids, &q.folded).collect();
        if let Some(digits) = &q.digits {
            candidates.extend(prefixed(&self.phones, digits));
            let reversed: String = digits.chars().rev().collect();
            candidates.extend(prefixed(&self.phones_reversed, &reversed));
        }
        // The records holding every bigram of the query: from the rarest bigram's, checked below.
        let lists: Option<Vec<&HashSet<Doc>>> = bigrams(&q.folded).map(|g| self.grams.get(&g)).collect();
        if let Some(mut lists) = lists.filter(|l| !l.is_empty()) {
            lists.sort_by_key(|l| l.len());
            let (rarest, others) = lists.split_first().expect("not empty");
            candidates.extend(rarest.iter().filter(|d| others.iter().all(|l| l.contains(d))));
        }
        let mut found: Vec<ListKey> = candidates
            .into_iter()
            .filter_map(|d| self.entry(d))
            .filter(|e| e.keys.matches(q))
            .map(|e| e.listing.clone())
            .collect();
        found.sort_unstable();
        found
    }

    /// The other records reported within `radius_m` of the case `id` or at its address (folded),
    /// created within `window` before or after it, in listing order; `None` when it is not held.
    pub(super) fn repeats(&self, id: &str, radius_m: f64, window: SignedDuration) -> Option<Vec<ListKey>> {
        let doc = *self.numbers.get(id)?;
        let entry = self.entry(doc)?;
        let created = entry.listing.0.0;
        let mut docs: HashSet<Doc> = HashSet::new();
        if let Some(at) = entry.keys.place {
            let reach = geodesy::metres_to_chord(radius_m);
            docs.extend(self.places.locate_within_distance(at, reach * reach).map(|p| p.data));
        }
        if let Some(address) = &entry.keys.address
            && let Some(same) = self.addresses.get(address)
        {
            docs.extend(same);
        }
        docs.remove(&doc);
        let within = |t: Timestamp| t.duration_since(created).abs() <= window;
        let mut found: Vec<ListKey> = docs
            .into_iter()
            .filter_map(|d| self.entry(d))
            .filter(|e| within(e.listing.0.0))
            .map(|e| e.listing.clone())
            .collect();
        found.sort_unstable();
        Some(found)
    }
}

/// The records of the keys in `set` that start with `prefix`.
fn prefixed<'a>(set: &'a BTreeSet<(String, Doc)>, prefix: &'a str) -> impl Iterator<Item = Doc> + 'a {
    set.range((prefix.to_owned(), 0)..).take_while(move |(key, _)| key.starts_with(prefix)).map(|(_, doc)| *doc)
}

#[cfg(test)]
mod tests;
