//! The layering rules, checked (see ARCHITECTURE.md, "Layers"): which crate may depend on
//! which, and which module of this crate may use which. A change that breaks one fails here
//! naming the edge.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `[dependencies]` (not dev-dependencies: tests may use anything) of a workspace crate.
fn dependencies(krate: &str) -> Vec<String> {
    let path = workspace_root()
        .join("crates")
        .join(krate)
        .join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let manifest: toml::Table = text.parse().unwrap_or_else(|e| panic!("{path:?}: {e}"));
    manifest
        .get("dependencies")
        .and_then(|d| d.as_table())
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

/// Crates that carry a transport (HTTP, TLS, sockets of a protocol) or are adapters.
const TRANSPORTS: &[&str] = &[
    "axum",
    "hyper",
    "hyper-util",
    "tower",
    "tower-http",
    "reqwest",
    "tokio-rustls",
    "utoipa-axum",
    "sluice-server",
    "sluice-client",
    "sluice-wire",
    "sluice",
];
const ENGINES: &[&str] = &["sluice-wal", "sluice-gorilla", "sluice-ts", "sluice-vector"];

/// (crate, what it must not depend on, why)
fn crate_rules() -> Vec<(&'static str, Vec<&'static str>, &'static str)> {
    let ours = vec![
        "sluice-api",
        "sluice-client",
        "sluice-gorilla",
        "sluice-promql",
        "sluice-server",
        "sluice-ts",
        "sluice-vector",
        "sluice-wire",
        "sluice",
    ];
    let mut rules = vec![("sluice-wal", ours, "the WAL imports nothing of ours")];
    for engine in ENGINES {
        rules.push((
            engine,
            TRANSPORTS.to_vec(),
            "engines never import a transport",
        ));
    }
    for wire_types in ["sluice-api", "sluice-wire"] {
        let mut banned = ENGINES.to_vec();
        banned.extend(["sluice-server", "sluice-client", "axum", "hyper", "reqwest"]);
        rules.push((
            wire_types,
            banned,
            "wire types have no engine or transport dependencies",
        ));
    }
    let mut query_language = ENGINES.to_vec();
    query_language.extend(TRANSPORTS.iter().copied());
    query_language.push("sluice-api");
    rules.push((
        "sluice-promql",
        query_language,
        "the PromQL evaluator reads a storage interface, never an engine or a transport",
    ));
    let mut client = ENGINES.to_vec();
    client.push("sluice-server");
    rules.push((
        "sluice-client",
        client,
        "the client speaks the API, never the engines",
    ));
    rules
}

#[test]
fn crates_depend_only_downwards() {
    let mut broken = Vec::new();
    for (krate, banned, why) in crate_rules() {
        for dep in dependencies(krate) {
            if banned.contains(&dep.as_str()) {
                broken.push(format!("{krate} depends on {dep}: {why}"));
            }
        }
    }
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}

/// This crate's top-level modules by layer.
const CORE: &[&str] = &[
    "admission",
    "auth",
    "catalogue",
    "config",
    "core",
    "db",
    "error",
    "expiry",
    "flusher",
    "metrics",
    "monitoring",
    "replication",
    "retention",
    "request_id",
    "state",
    "timefmt",
];
const ADAPTERS: &[&str] = &["http", "wire"];
/// Where adapters meet: the served router and the server's life cycle.
const COMPOSITION: &[&str] = &["router", "server"];

/// The top-level modules each top-level module of this crate uses (`crate::x`), comments left
/// out, read from the sources.
fn module_graph() -> BTreeMap<String, Vec<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(&src).expect("src") {
        let path = entry.expect("entry").path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        if name == "lib" || name == "layering" {
            continue;
        }
        let mut files = vec![];
        collect_rs(&path, &mut files);
        let uses = graph.entry(name.clone()).or_default();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("source");
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or("");
                for (i, _) in code.match_indices("crate::") {
                    let rest = &code[i + "crate::".len()..];
                    let module: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !module.is_empty() && module != name && !uses.contains(&module) {
                        uses.push(module);
                    }
                }
            }
        }
        uses.sort();
    }
    graph
}

fn collect_rs(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for e in std::fs::read_dir(path).expect("dir") {
            collect_rs(&e.expect("entry").path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

#[test]
fn the_core_never_uses_an_adapter_and_adapters_never_use_each_other() {
    let graph = module_graph();
    let mut broken = Vec::new();
    for (module, uses) in &graph {
        let known = CORE.contains(&module.as_str())
            || ADAPTERS.contains(&module.as_str())
            || COMPOSITION.contains(&module.as_str());
        if !known {
            broken.push(format!(
                "module {module} has no layer: add it to CORE, ADAPTERS or COMPOSITION"
            ));
        }
        for used in uses {
            let up = ADAPTERS.contains(&used.as_str()) || COMPOSITION.contains(&used.as_str());
            if CORE.contains(&module.as_str()) && up {
                broken.push(format!("core module {module} uses {used}"));
            }
            if ADAPTERS.contains(&module.as_str())
                && (COMPOSITION.contains(&used.as_str())
                    || (ADAPTERS.contains(&used.as_str()) && used != module))
            {
                broken.push(format!("adapter {module} uses {used}"));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "layering broken:\n{}\n(module graph: {graph:#?})",
        broken.join("\n")
    );
}
