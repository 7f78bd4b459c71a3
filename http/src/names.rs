//! The region's names in each language the API writes, and the reader's language: a case's
//! explanation and linkbus's own timeline notes are rendered from their data
//! ([`linkbus_wire::explain`]) in the language `Accept-Language` asks for, with the categories,
//! departments and areas named in it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, header};
use linkbus_geo_data::Region;
use linkbus_wire::CaseRecord;
use linkbus_wire::explain::{Lang, Names};

/// The languages the API writes, in the tags `Accept-Language` is matched against.
const LANGS: [Lang; 2] = [Lang::En, Lang::ZhCn];

/// Names of one region's things in every language the API writes.
#[derive(Debug, Default)]
pub struct RegionNames {
    by_lang: Vec<(Lang, LangNames)>,
    /// As the region names them, in its own language.
    own: LangNames,
}

/// Names in one language.
#[derive(Debug, Default)]
struct LangNames {
    categories: HashMap<String, String>,
    departments: HashMap<String, String>,
    /// The same in every language: shared, not copied.
    areas: Arc<HashMap<String, String>>,
}

impl Names for LangNames {
    fn category(&self, id: &str) -> Option<&str> {
        self.categories.get(id).map(String::as_str)
    }
    fn department(&self, id: &str) -> Option<&str> {
        self.departments.get(id).map(String::as_str)
    }
    fn area(&self, code: &str) -> Option<&str> {
        self.areas.get(code).map(String::as_str)
    }
}

impl RegionNames {
    /// The names of `region`: a thing's name in a language is its `names` entry for that
    /// language, else its own name. Areas have one name, the region's.
    pub fn new(region: &Region) -> Self {
        let mut areas = HashMap::new();
        for c in &region.communities {
            areas.insert(c.id.clone(), c.name.clone());
            areas.insert(c.district.code.clone(), c.district.name.clone());
            if let Some(s) = &c.sub_district {
                areas.insert(s.code.clone(), s.name.clone());
            }
        }
        let areas = Arc::new(areas);
        let in_lang = |lang: Option<Lang>| {
            let named = |name: &String, names: &std::collections::BTreeMap<String, String>| {
                lang.and_then(|l| names.get(l.tag())).unwrap_or(name).clone()
            };
            LangNames {
                categories: region.categories.iter().map(|c| (c.id.clone(), named(&c.name, &c.names))).collect(),
                departments: region
                    .departments
                    .departments
                    .iter()
                    .map(|d| (d.id.clone(), named(&d.name, &d.names)))
                    .collect(),
                areas: Arc::clone(&areas),
            }
        };
        Self { by_lang: LANGS.iter().map(|&lang| (lang, in_lang(Some(lang)))).collect(), own: in_lang(None) }
    }

    /// Category `id`'s name in `lang` (`None`: the region's own language).
    pub fn category(&self, lang: Option<Lang>, id: &str) -> Option<&str> {
        self.lookup(lang).category(id)
    }

    /// Department `id`'s name in `lang` (`None`: the region's own language).
    pub fn department(&self, lang: Option<Lang>, id: &str) -> Option<&str> {
        self.lookup(lang).department(id)
    }

    fn lookup(&self, lang: Option<Lang>) -> &LangNames {
        lang.and_then(|lang| self.by_lang.iter().find(|(l, _)| *l == lang)).map_or(&self.own, |(_, names)| names)
    }

    fn names(&self, lang: Lang) -> &dyn Names {
        match self.by_lang.iter().find(|(l, _)| *l == lang) {
            Some((_, names)) => names,
            None => &linkbus_wire::explain::Ids,
        }
    }

    /// Writes `record`'s explanation and linkbus's own timeline notes in `lang`, from their
    /// reasons and system notes (what was recorded before those existed stays in English; what
    /// people wrote stays as they wrote it).
    pub fn localize(&self, record: &mut CaseRecord, lang: Lang) {
        let names = self.names(lang);
        let reasons = &record.decision.reasons;
        if !reasons.is_empty() {
            record.decision.explanation = reasons.iter().map(|r| r.render(lang, names)).collect();
        }
        for entry in &mut record.timeline {
            if let Some(note) = &entry.system_note {
                entry.note = Some(note.render(lang, names));
            }
        }
    }
}

/// The language the request's `Accept-Language` prefers among those the API writes (any `zh`
/// tag reads Chinese, any `en` tag English); `None` when it names neither or is absent.
pub fn reader_lang(headers: &HeaderMap) -> Option<Lang> {
    let value = headers.get(header::ACCEPT_LANGUAGE)?.to_str().ok()?;
    accept_language::parse(value).iter().find_map(|tag| {
        let primary = tag.split('-').next().unwrap_or_default().to_ascii_lowercase();
        match primary.as_str() {
            "zh" => Some(Lang::ZhCn),
            "en" => Some(Lang::En),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lang(value: &str) -> Option<Lang> {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_LANGUAGE, value.parse().expect("a header value"));
        reader_lang(&headers)
    }

    #[test]
    fn the_first_language_written_by_quality_is_the_readers() {
        assert_eq!(lang("zh-CN,zh;q=0.9,en;q=0.8"), Some(Lang::ZhCn));
        assert_eq!(lang("en-US,en;q=0.9,zh-CN;q=0.8"), Some(Lang::En));
        assert_eq!(lang("fr-FR, zh-Hans;q=0.7, en;q=0.5"), Some(Lang::ZhCn));
        assert_eq!(lang("en;q=0.3, zh-TW;q=0.6"), Some(Lang::ZhCn));
        assert_eq!(lang("fr, de"), None);
        assert_eq!(reader_lang(&HeaderMap::new()), None);
    }
}
