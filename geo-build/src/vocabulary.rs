//! The categories both kinds of region share, named in English and Chinese: the 26 SF 311
//! categories (so the real SF 311 mix can drive a Chinese city's simulated feed) and four
//! emergency ones. A region takes its own language's name as `name` and the other as `names`.

/// `(id, English, Chinese)` of every category, 311 ones in the SF vocabulary's order.
pub(crate) const CATEGORIES: [(&str, &str, &str); 30] = [
    ("311_external_request", "311 External Request", "外部转办"),
    ("abandoned_vehicle", "Abandoned Vehicle", "僵尸车"),
    ("blocked_street_or_sidewalk", "Blocked Street or SideWalk", "占道"),
    ("catch_basin_maintenance", "Catch Basin Maintenance", "雨水口维护"),
    ("color_curb", "Color Curb", "路缘标线"),
    ("damaged_property", "Damaged Property", "公物损坏"),
    ("dpw_volunteer_programs", "DPW Volunteer Programs", "志愿服务项目"),
    ("general_requests", "General Requests", "一般诉求"),
    ("graffiti_private_property", "Graffiti Private Property", "私有财产涂鸦"),
    ("graffiti_public_property", "Graffiti Public Property", "公共设施涂鸦"),
    ("illegal_postings", "Illegal Postings", "小广告"),
    ("interdepartmental_request", "Interdepartmental Request", "部门间转办"),
    ("litter_receptacles", "Litter Receptacles", "垃圾桶"),
    ("muni_feedback", "MUNI Feedback", "公交意见"),
    ("noise_report", "Noise Report", "噪音扰民"),
    ("rec_and_park_requests", "Rec and Park Requests", "公园绿地"),
    ("residential_building_request", "Residential Building Request", "住宅楼诉求"),
    ("sewer_issues", "Sewer Issues", "排水管道"),
    ("sfha_requests", "SFHA Requests", "公租房报修"),
    ("sidewalk_or_curb", "Sidewalk or Curb", "人行道"),
    ("sign_repair", "Sign Repair", "标识牌维修"),
    ("street_and_sidewalk_cleaning", "Street and Sidewalk Cleaning", "街道保洁"),
    ("street_defects", "Street Defects", "道路破损"),
    ("streetlights", "Streetlights", "路灯"),
    ("temporary_sign_request", "Temporary Sign Request", "临时标志"),
    ("tree_maintenance", "Tree Maintenance", "树木养护"),
    ("fire", "Fire", "火灾"),
    ("cardiac_arrest", "Cardiac arrest", "心脏骤停"),
    ("medical_emergency", "Medical emergency", "急病"),
    ("elderly_assistance", "Elderly person needs help", "老人求助"),
];

/// The Chinese name of category `id`, if it is one of [`CATEGORIES`].
pub(crate) fn chinese(id: &str) -> Option<&'static str> {
    CATEGORIES.iter().find(|(c, _, _)| *c == id).map(|(_, _, zh)| *zh)
}

/// `names` with one entry, `tag` → `name`.
pub(crate) fn other_name(tag: &str, name: &str) -> std::collections::BTreeMap<String, String> {
    std::collections::BTreeMap::from([(tag.to_owned(), name.to_owned())])
}
