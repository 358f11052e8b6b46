//! The shape the architecture promises, checked on the sources: which crates may depend on
//! which (the core on no component; receivers never on exporters; processors never on
//! receivers; components share code only through the core, an extension or a helper), and
//! no circle of imports between the core's files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Every workspace crate's directory (relative) and the podnet crates it depends on
/// (normal dependencies; tests may use anything).
fn crate_deps() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("workspace Cargo.toml");
    let members: Vec<String> = manifest
        .split("members = [")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .expect("members")
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| !m.is_empty())
        .collect();
    let mut out = BTreeMap::new();
    for dir in members {
        let text = std::fs::read_to_string(root().join(&dir).join("Cargo.toml")).expect("crate Cargo.toml");
        let name = text.lines().find_map(|l| l.strip_prefix("name = ")).expect("name").trim_matches('"').to_string();
        let normal = text.split("[dependencies]").nth(1).map(|s| s.split("\n[").next().unwrap_or_default()).unwrap_or_default();
        let deps = normal
            .lines()
            .filter_map(|l| l.split(['=', '.']).next())
            .map(str::trim)
            .filter(|d| d.starts_with("podnet-"))
            .map(str::to_string)
            .collect();
        out.insert(name, (dir, deps));
    }
    out
}

#[test]
fn crates_depend_only_as_the_architecture_allows() {
    let crates = crate_deps();
    let dir_of = |name: &str| crates.get(name).map(|(d, _)| d.clone()).unwrap_or_default();
    let mut violations = Vec::new();
    for (name, (dir, deps)) in &crates {
        for dep in deps {
            let dep_dir = dir_of(dep);
            let layer = |d: &str| d.split('/').next().unwrap_or_default().to_string();
            let allowed = match layer(dir).as_str() {
                "pipeline" => false,
                // The core is `pipeline` and its small library crates (`pipeline/tls`).
                "extensions" => layer(&dep_dir) == "pipeline",
                "receivers" | "processors" => layer(&dep_dir) == "pipeline" || layer(&dep_dir) == "extensions",
                // Exporters share the helper and the translator, never another exporter.
                "exporters" => {
                    layer(&dep_dir) == "pipeline" || dep_dir == "exporters/helper" || dep_dir == "exporters/prometheus_translator"
                }
                _ => true,
            };
            if !allowed {
                violations.push(format!("{name} ({dir}) depends on {dep} ({dep_dir})"));
            }
        }
    }
    assert!(crates.contains_key("podnet-pipeline") && crates.len() > 10, "{crates:?}");
    assert!(violations.is_empty(), "{violations:#?}");
}

/// Files of `pipeline/src` and the files each imports through `crate::…` and `super::…`.
fn core_imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = root().join("pipeline/src");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&src).expect("pipeline/src") {
        let p = entry.expect("entry").path();
        if p.is_dir() {
            for e in std::fs::read_dir(&p).expect("dir") {
                files.push(e.expect("entry").path());
            }
        } else {
            files.push(p);
        }
    }
    let module = |p: &Path| {
        let rel = p.strip_prefix(&src).expect("under src").with_extension("");
        let m = rel.display().to_string();
        m.strip_suffix("/mod").map(str::to_string).unwrap_or(m)
    };
    let modules: BTreeSet<String> = files.iter().map(|p| module(p)).collect();
    let mut graph = BTreeMap::new();
    for p in &files {
        let me = module(p);
        let text = std::fs::read_to_string(p).expect("source");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let mut deps = BTreeSet::new();
        for (prefix, base) in
            [("crate::", String::new()), ("super::", me.rsplit_once('/').map(|(b, _)| format!("{b}/")).unwrap_or_default())]
        {
            for part in code.split(prefix).skip(1) {
                let name: String = part.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                let target = format!("{base}{name}");
                if modules.contains(&target) && target != me {
                    deps.insert(target);
                }
            }
        }
        graph.insert(me, deps);
    }
    graph
}

#[test]
fn the_core_has_no_circle_of_imports() {
    let graph = core_imports();
    assert!(graph.get("component").is_some_and(|d| d.contains("id")), "the scan sees imports: {graph:#?}");
    // Depth-first search for a back edge.
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<&'a str, bool>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(true) => {
                let start = path.iter().position(|n| *n == node).unwrap_or(0);
                return Some(path[start..].iter().map(|s| s.to_string()).chain([node.to_string()]).collect());
            }
            Some(false) => return None,
            None => {}
        }
        state.insert(node, true);
        path.push(node);
        for dep in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(dep, graph, state, path) {
                return Some(cycle);
            }
        }
        path.pop();
        state.insert(node, false);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        let mut path = Vec::new();
        if let Some(cycle) = visit(node, &graph, &mut state, &mut path) {
            panic!("import circle in pipeline/src: {}", cycle.join(" → "));
        }
    }
}
