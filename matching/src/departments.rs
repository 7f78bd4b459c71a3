//! Which department handles a case: category × jurisdiction, the most specific jurisdiction
//! (community, then sub-district, district, region) winning; departments tied at that level
//! all get the case. What no rule covers goes to the region's catch-all.

use foldhash::HashMap;

use linkbus_geo_data::{Community, Departments};
use linkbus_wire::JurisdictionLevel;

/// Levels from most to least specific.
const LEVELS: [JurisdictionLevel; 4] = [
    JurisdictionLevel::Community,
    JurisdictionLevel::SubDistrict,
    JurisdictionLevel::District,
    JurisdictionLevel::Region,
];

fn level_index(level: JurisdictionLevel) -> usize {
    match level {
        JurisdictionLevel::Community => 0,
        JurisdictionLevel::SubDistrict => 1,
        JurisdictionLevel::District => 2,
        JurisdictionLevel::Region => 3,
    }
}

/// The department a rule or the catch-all chose.
#[derive(Debug, Clone, PartialEq)]
pub enum Chosen<'a> {
    /// Departments (indexes into [`DepartmentRules::departments`]) with a duty for the category
    /// at `level` in `area`.
    ByRule {
        /// The winning level.
        level: JurisdictionLevel,
        /// The area id at that level.
        area: &'a str,
        /// The departments, in file order.
        departments: &'a [usize],
    },
    /// Nothing matched: the catch-all.
    CatchAll,
}

/// Rules indexed for lookup without allocation: category → level → area → departments.
#[derive(Debug, Clone)]
pub struct DepartmentRules {
    departments: Departments,
    catch_all: usize,
    rules: HashMap<String, [HashMap<String, Vec<usize>>; 4]>,
    region_area: String,
}

impl DepartmentRules {
    /// Indexes a region's departments; `region_area` is the id region-wide duties name.
    pub fn new(departments: Departments, region_area: &str) -> Self {
        let mut rules: HashMap<String, [HashMap<String, Vec<usize>>; 4]> = HashMap::default();
        for (d, department) in departments.departments.iter().enumerate() {
            for duty in &department.duties {
                let level = level_index(duty.level);
                for category in &duty.categories {
                    let by_level = rules.entry(category.clone()).or_default();
                    for area in &duty.areas {
                        let ds = by_level[level].entry(area.clone()).or_default();
                        if !ds.contains(&d) {
                            ds.push(d);
                        }
                    }
                }
            }
        }
        let catch_all = departments.departments.iter().position(|d| d.id == departments.catch_all).unwrap_or_default();
        Self { departments, catch_all, rules, region_area: region_area.to_owned() }
    }

    /// Every department, in file order.
    pub fn departments(&self) -> &[linkbus_geo_data::Department] {
        &self.departments.departments
    }

    /// The catch-all department's index.
    pub fn catch_all(&self) -> usize {
        self.catch_all
    }

    /// The departments for `category` in `community` (`None` when the location matched none).
    pub fn choose<'a>(&'a self, category: &str, community: Option<&'a Community>) -> Chosen<'a> {
        self.ladder(category, community).next().unwrap_or(Chosen::CatchAll)
    }

    /// Every level with departments for `category` in `community`, most specific first: the
    /// first is the choice, the rest are the fallbacks if it rejects the case.
    pub fn ladder<'a>(&'a self, category: &str, community: Option<&'a Community>) -> impl Iterator<Item = Chosen<'a>> {
        let by_level = self.rules.get(category).filter(|_| community.is_some());
        let areas: [Option<&'a str>; 4] = match community {
            Some(c) => [
                Some(c.id.as_str()),
                c.sub_district.as_ref().map(|s| s.code.as_str()),
                Some(c.district.code.as_str()),
                Some(self.region_area.as_str()),
            ],
            None => [None; 4],
        };
        LEVELS.iter().zip(areas).enumerate().filter_map(move |(n, (level, area))| {
            let (area, departments) = area.and_then(|a| by_level?[n].get_key_value(a))?;
            Some(Chosen::ByRule { level: *level, area, departments })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::MultiPolygon;
    use linkbus_geo_data::{Area, Department, Duty};

    fn dept(id: &str, level: JurisdictionLevel, area: &str) -> Department {
        Department {
            id: id.into(),
            name: id.into(),
            names: Default::default(),
            parent: None,
            contact: None,
            duties: vec![Duty { categories: vec!["fire".into()], level, areas: vec![area.into()] }],
        }
    }

    #[test]
    fn most_specific_jurisdiction_wins() {
        let rules = DepartmentRules::new(
            Departments {
                catch_all: "desk".into(),
                departments: vec![
                    dept("desk", JurisdictionLevel::Region, "nowhere-else"),
                    dept("city", JurisdictionLevel::Region, "city"),
                    dept("district", JurisdictionLevel::District, "d1"),
                    dept("street", JurisdictionLevel::SubDistrict, "s1"),
                    dept("station-a", JurisdictionLevel::Community, "c1"),
                    dept("station-b", JurisdictionLevel::Community, "c1"),
                ],
            },
            "city",
        );
        let by = |c: &Community| match rules.choose("fire", Some(c)) {
            Chosen::ByRule { level, departments, .. } => {
                (level, departments.iter().map(|d| rules.departments()[*d].id.clone()).collect::<Vec<_>>())
            }
            Chosen::CatchAll => panic!("catch-all"),
        };
        assert_eq!(
            by(&community("c1", Some("s1"), "d1")),
            (JurisdictionLevel::Community, vec!["station-a".into(), "station-b".into()])
        );
        assert_eq!(by(&community("c2", Some("s1"), "d1")), (JurisdictionLevel::SubDistrict, vec!["street".into()]));
        assert_eq!(by(&community("c3", None, "d1")), (JurisdictionLevel::District, vec!["district".into()]));
        assert_eq!(by(&community("c4", Some("s9"), "d9")), (JurisdictionLevel::Region, vec!["city".into()]));
        assert_eq!(rules.choose("flood", Some(&community("c1", None, "d1"))), Chosen::CatchAll);
        assert_eq!(rules.choose("fire", None), Chosen::CatchAll);
        assert_eq!(rules.departments()[rules.catch_all()].id, "desk");
    }

    fn community(id: &str, sub: Option<&str>, district: &str) -> Community {
        Community {
            id: id.into(),
            name: id.into(),
            sub_district: sub.map(|s| Area { code: s.into(), name: s.into() }),
            district: Area { code: district.into(), name: district.into() },
            boundary: MultiPolygon::new(vec![]),
        }
    }

    /// The ladder as (level, area, department ids).
    fn ladder(
        rules: &DepartmentRules,
        category: &str,
        c: Option<&Community>,
    ) -> Vec<(JurisdictionLevel, String, Vec<String>)> {
        rules
            .ladder(category, c)
            .map(|chosen| match chosen {
                Chosen::ByRule { level, area, departments } => {
                    (level, area.to_owned(), departments.iter().map(|d| rules.departments()[*d].id.clone()).collect())
                }
                Chosen::CatchAll => panic!("a ladder has rules only"),
            })
            .collect()
    }

    #[test]
    fn the_ladder_lists_every_level_with_a_rule_most_specific_first() {
        let both = Department {
            duties: vec![
                Duty {
                    categories: vec!["fire".into(), "flood".into()],
                    level: JurisdictionLevel::District,
                    areas: vec!["d1".into(), "d1".into()],
                },
                Duty { categories: vec!["fire".into()], level: JurisdictionLevel::District, areas: vec!["d1".into()] },
            ],
            ..dept("both", JurisdictionLevel::District, "d1")
        };
        let rules = DepartmentRules::new(
            Departments {
                catch_all: "desk".into(),
                departments: vec![
                    dept("city", JurisdictionLevel::Region, "city"),
                    dept("station", JurisdictionLevel::Community, "c1"),
                    both,
                    dept("desk", JurisdictionLevel::Region, "elsewhere"),
                    dept("street", JurisdictionLevel::SubDistrict, "s1"),
                ],
            },
            "city",
        );
        let c1 = community("c1", Some("s1"), "d1");
        let level =
            |level, area: &str, ids: &[&str]| (level, area.to_owned(), ids.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            ladder(&rules, "fire", Some(&c1)),
            [
                level(JurisdictionLevel::Community, "c1", &["station"]),
                level(JurisdictionLevel::SubDistrict, "s1", &["street"]),
                // Listed by two duties and twice in one: there once.
                level(JurisdictionLevel::District, "d1", &["both"]),
                level(JurisdictionLevel::Region, "city", &["city"]),
            ]
        );
        assert_eq!(ladder(&rules, "flood", Some(&c1)), [level(JurisdictionLevel::District, "d1", &["both"])]);
        // No sub-district: that rung is skipped, not matched by some other area.
        assert_eq!(
            ladder(&rules, "fire", Some(&community("c2", None, "d2"))),
            [level(JurisdictionLevel::Region, "city", &["city"])]
        );
        assert_eq!(ladder(&rules, "fire", None), []);
        assert_eq!(ladder(&rules, "theft", Some(&c1)), []);
        // The catch-all is found wherever it is listed.
        assert_eq!((rules.catch_all(), rules.departments()[rules.catch_all()].id.as_str()), (3, "desk"));
        assert_eq!(rules.choose("theft", Some(&c1)), Chosen::CatchAll);
    }
}
