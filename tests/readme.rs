//! The README's table of supported APIs is made from the same table the gateway serves
//! (`iggy_kafka_core::protocol::api::SUPPORTED_APIS`), so it cannot drift. Run with `UPDATE_README=1`
//! to rewrite it.

const START: &str = "<!-- api-table:start (generated from core/src/protocol/api.rs; UPDATE_README=1 cargo test --test readme) -->\n";
const END: &str = "<!-- api-table:end -->";

#[test]
fn readme_lists_exactly_the_served_apis() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).expect("README.md");
    let start = readme.find(START).expect("table start marker") + START.len();
    let end = readme[start..].find(END).expect("table end marker") + start;
    let table = iggy_kafka_core::protocol::api::markdown_table();
    if std::env::var_os("UPDATE_README").is_some() {
        let updated = format!("{}{table}{}", &readme[..start], &readme[end..]);
        std::fs::write(path, updated).expect("write README.md");
        return;
    }
    assert_eq!(
        &readme[start..end],
        table,
        "README's API table is stale: run UPDATE_README=1 cargo test --test readme"
    );
}
