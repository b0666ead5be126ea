//! The operators' files, checked against the code, since no Docker engine runs here:
//! `docker-compose.yml` (every command a binary the workspace builds, every variable one the code
//! reads, every port and address consistent), the `Dockerfile` (builds and ships those binaries,
//! runs as a non-root user, has a health check), and `.env.example` (every variable the code
//! reads, each with a comment, and nothing the code does not read).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_owned()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every `*.rs` file under `dir`.
fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// The environment variables the services and the `hub` command read: every string literal in
/// their sources shaped like `SOME_NAME` (the configuration code names each variable once, as a
/// literal), plus `RUST_LOG`, which the logging filter reads. The test-support crate and the
/// tests read only `HUB_TEST_*`, which are not settings.
fn variables_the_code_reads() -> BTreeSet<String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let crate_dir = entry.unwrap().path();
        if crate_dir.ends_with("test-support") {
            continue;
        }
        let src = crate_dir.join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    let mut names = BTreeSet::from(["RUST_LOG".to_owned()]);
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for piece in text.split('"').skip(1).step_by(2) {
            let shaped = piece.len() > 3
                && piece.contains('_')
                && piece.starts_with(|c: char| c.is_ascii_uppercase())
                && piece
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if shaped && !piece.starts_with("CARGO_") {
                names.insert(piece.to_owned());
            }
        }
    }
    assert!(
        names.contains("DATABASE_URL") && names.contains("GATEWAY_ADDR"),
        "the scan finds the configuration: {names:?}"
    );
    names
}

/// The binaries the workspace builds: every `[[bin]]` name.
fn workspace_binaries() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let mut in_bin = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_bin = line == "[[bin]]";
            } else if in_bin && let Some(name) = line.strip_prefix("name = ") {
                names.insert(name.trim_matches('"').to_owned());
            }
        }
    }
    names
}

fn compose() -> Value {
    let mut yaml: yaml_serde::Value = yaml_serde::from_str(&read("docker-compose.yml")).unwrap();
    yaml.apply_merge().unwrap();
    serde_json::to_value(yaml).unwrap()
}

fn port_of(address: &str) -> u16 {
    address
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no port in {address}"))
}

#[test]
fn the_compose_file_matches_the_code() {
    let compose = compose();
    let services = compose["services"].as_object().unwrap();
    let binaries = workspace_binaries();
    let variables = variables_the_code_reads();
    assert!(
        ["gateway", "auth", "core", "mcp", "hub"]
            .iter()
            .all(|b| binaries.contains(*b)),
        "{binaries:?}"
    );

    assert!(
        services["postgres"]["image"]
            .as_str()
            .unwrap()
            .starts_with("postgres:16")
    );
    assert!(
        services["redis"]["image"]
            .as_str()
            .unwrap()
            .starts_with("redis:7")
    );
    let redis_command = services["redis"]["command"].to_string();
    assert!(
        redis_command.contains("--appendonly") && redis_command.contains("yes"),
        "Redis keeps sessions across a restart: {redis_command}"
    );

    let ours: BTreeMap<&String, &Value> = services
        .iter()
        .filter(|(_, s)| {
            s["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("smart-ai-hub"))
        })
        .collect();
    assert_eq!(
        ours.keys().map(|k| k.as_str()).collect::<BTreeSet<_>>(),
        BTreeSet::from(["auth", "core", "gateway", "mcp", "migrate"]),
        "the hub's services"
    );
    let mut listen_ports = BTreeMap::new();
    for (name, service) in &ours {
        let command = service["command"].as_array().unwrap();
        let binary = command[0].as_str().unwrap();
        assert!(binaries.contains(binary), "{name}: {binary} is not built");
        assert_eq!(
            service["env_file"], ".env",
            "{name} takes its settings from .env"
        );
        for (variable, value) in service["environment"].as_object().unwrap() {
            assert!(
                variables.contains(variable),
                "{name} sets {variable}, which the code never reads"
            );
            if variable.ends_with("_ADDR") {
                listen_ports.insert(name.as_str(), port_of(value.as_str().unwrap()));
            }
        }
        if *name != "gateway" {
            assert!(
                service.get("ports").is_none(),
                "only the gateway is published: {name}"
            );
        }
        if *name != "migrate" {
            for (dependency, condition) in service["depends_on"].as_object().unwrap() {
                let condition = condition["condition"].as_str().unwrap();
                let expected = if dependency == "migrate" {
                    "service_completed_successfully"
                } else {
                    "service_healthy"
                };
                assert_eq!(condition, expected, "{name} waits for {dependency}");
            }
        }
    }
    assert_eq!(
        services["migrate"]["command"],
        serde_json::json!(["hub", "migrate"])
    );
    for (dependent, dependencies) in [
        (
            "gateway",
            &["auth", "core", "mcp", "migrate", "postgres", "redis"][..],
        ),
        ("mcp", &["core"][..]),
        ("auth", &["migrate", "postgres", "redis"][..]),
        ("core", &["migrate", "postgres"][..]),
    ] {
        let declared: BTreeSet<&str> = services[dependent]["depends_on"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            declared,
            dependencies.iter().copied().collect(),
            "{dependent}"
        );
    }

    // Ports: each service listens where the others look for it and its health check asks.
    assert_eq!(listen_ports["gateway"], 3000);
    assert_eq!(listen_ports["auth"], 3001);
    assert_eq!(listen_ports["core"], 3002);
    assert_eq!(listen_ports["mcp"], 3003);
    // Published on 3000 unless GATEWAY_PORTS names a range for more gateways; no service has a
    // fixed address or name, so gateway and core scale (--scale) without clashes.
    let published = services["gateway"]["ports"][0].as_str().unwrap();
    assert_eq!(published, "${GATEWAY_PORTS:-3000}:3000");
    for (name, service) in &ours {
        assert!(service.get("container_name").is_none(), "{name}");
        assert!(
            service["networks"]["hub"].get("ipv4_address").is_none(),
            "{name} has a fixed address, so it cannot be scaled"
        );
    }
    for (variable, target) in [
        ("AUTH_URL", "auth"),
        ("CORE_URL", "core"),
        ("MCP_URL", "mcp"),
    ] {
        let url = services["gateway"]["environment"][variable]
            .as_str()
            .unwrap();
        assert_eq!(
            url,
            format!("http://{target}:{}", listen_ports[target]),
            "{variable}"
        );
    }
    let core_url = services["mcp"]["environment"]["CORE_URL"].as_str().unwrap();
    assert_eq!(
        core_url,
        format!("http://core:{}", listen_ports["core"]),
        "mcp finds core"
    );
    for name in ["auth", "core", "mcp"] {
        let test = services[name]["healthcheck"]["test"].as_array().unwrap();
        let port: u16 = test[2].as_str().unwrap().parse().unwrap();
        assert_eq!(port, listen_ports[name], "{name}'s health check");
    }
    // Auth trusts the hub's network, where the gateways are, and nothing wider.
    let subnet = compose["networks"]["hub"]["ipam"]["config"][0]["subnet"]
        .as_str()
        .unwrap();
    assert_eq!(
        services["auth"]["environment"]["AUTH_TRUSTED_PROXIES"].as_str(),
        Some(subnet)
    );
    // Everything ${…} in the file comes from .env, and .env.example offers it.
    let example = read(".env.example");
    let text = read("docker-compose.yml");
    for piece in text.split("${").skip(1) {
        let name: String = piece
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        assert!(
            example.lines().any(|l| l.starts_with(&format!("{name}="))),
            "compose reads {name} from .env; .env.example must offer it"
        );
    }
}

#[test]
fn the_dockerfile_ships_the_binaries_compose_runs() {
    let dockerfile = read("Dockerfile");
    let compose = compose();
    let run: BTreeSet<String> = compose["services"]
        .as_object()
        .unwrap()
        .values()
        .filter(|s| {
            s["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("smart-ai-hub"))
        })
        .filter_map(|s| s["command"][0].as_str().map(str::to_owned))
        .collect();
    for binary in &run {
        assert!(
            dockerfile.contains(&format!("target/release/{binary}")),
            "the image lacks {binary}"
        );
    }
    let user = dockerfile
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("a USER line");
    assert!(!user.contains("root") && !user.ends_with(" 0"), "{user}");
    assert!(dockerfile.contains("HEALTHCHECK"));
    assert!(dockerfile.contains("EXPOSE 3000"));
    assert!(
        dockerfile.contains("--locked"),
        "the image builds what Cargo.lock pins"
    );
}

#[test]
fn env_example_names_every_variable_the_code_reads() {
    let example = read(".env.example");
    let code = variables_the_code_reads();
    let mut offered = BTreeSet::new();
    let lines: Vec<&str> = example.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some((name, _)) = line.split_once('=') else {
            continue;
        };
        if line.starts_with('#') || name.contains(' ') {
            continue;
        }
        assert!(
            i > 0 && lines[i - 1].starts_with('#'),
            "{name} has a one-line comment above it"
        );
        offered.insert(name.to_owned());
    }
    let missing: Vec<_> = code.difference(&offered).collect();
    assert!(missing.is_empty(), ".env.example lacks {missing:?}");
    // Compose's own (the database password, the published ports) aside, nothing is offered that
    // nothing reads.
    let compose = read("docker-compose.yml");
    let unread: Vec<_> = offered
        .difference(&code)
        .filter(|name| !compose.contains(&format!("${{{name}")))
        .collect();
    assert!(
        unread.is_empty(),
        ".env.example offers {unread:?}, which no code reads"
    );
}

#[test]
fn the_readme_configuration_table_names_every_variable() {
    let readme = read("README.md");
    let missing: Vec<_> = variables_the_code_reads()
        .into_iter()
        .filter(|name| !readme.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md does not describe {missing:?}"
    );
}
