//! The renderer against cbroglie/mustache 1.4.0: every case in agreement.json was rendered by
//! the real library, through the data path of the seed's CLI (JSON read by gopkg.in/yaml.v2),
//! by tests/oracle (docs/buildernet.md says how to run it again). Each case must give the same
//! bytes here, or fail to parse where the library fails.

use render_config::mustache::{Template, Value};

#[test]
fn renderer_agrees_with_cbroglie_mustache_1_4_0() {
    let table: serde_json::Value =
        serde_json::from_str(include_str!("agreement.json")).expect("agreement.json is JSON");
    let cases = table.as_array().expect("a list of cases");
    assert!(cases.len() >= 50, "the table lost its cases");
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let template = case["template"].as_str().expect("template");
        let data = Value::from(case["data"].clone());
        let want_error = case["error"].as_bool().unwrap_or(false);
        let got = Template::parse(template.as_bytes()).map(|t| t.render(&data).output);
        match (got, want_error) {
            (Ok(out), false) => {
                let want = case["output"].as_str().expect("output or error");
                if out != want.as_bytes() {
                    failures.push(format!(
                        "{name}:\n  want {want:?}\n  got  {:?}",
                        String::from_utf8_lossy(&out)
                    ));
                }
            }
            (Err(_), true) => {}
            (Ok(out), true) => failures.push(format!(
                "{name}: the library fails, we rendered {:?}",
                String::from_utf8_lossy(&out)
            )),
            (Err(e), false) => failures.push(format!("{name}: the library renders, we fail: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) disagree:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
