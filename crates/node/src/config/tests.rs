use super::*;

fn parse(text: &str) -> anyhow::Result<NodeConfig> {
    let file: FileConfig = toml::from_str(text).map_err(|e| anyhow::anyhow!("t.toml: {e}"))?;
    NodeConfig::from_file(file, Path::new("."), "t.toml", Overrides::default())
}

#[test]
fn unknown_keys_are_named() {
    let error = parse("[cache]\nmemory_sise = \"1GiB\"\n").unwrap_err().to_string();
    assert!(error.contains("memory_sise"), "{error}");
    assert!(error.contains("t.toml"), "{error}");
    let error = parse("[cachee]\n").unwrap_err().to_string();
    assert!(error.contains("cachee"), "{error}");
}

#[test]
fn bad_values_name_the_key() {
    let error = parse("[origin]\nurls = [\"ftp://x\"]\n").unwrap_err().to_string();
    assert!(error.contains("origin.urls[0]"), "{error}");
    let error =
        parse("[server]\nlisten = [\"nowhere\"]\n[origin]\nurls = [\"http://127.0.0.1:1\"]\n").unwrap_err().to_string();
    assert!(error.contains("server.listen[0]"), "{error}");
    let error = parse("[origin]\nurls = []\n").unwrap_err().to_string();
    assert!(error.contains("origin.urls"), "{error}");
    let error =
        parse("[[site]]\nhosts = [\"a.example\"]\n[site.origin]\nurls = [\"gopher://x\"]\n").unwrap_err().to_string();
    assert!(error.contains("site[0].origin.urls[0]"), "{error}");
    let error = parse("[server]\nunknown_host_status = 500\n[origin]\nurls = [\"http://127.0.0.1:1\"]\n")
        .unwrap_err()
        .to_string();
    assert!(error.contains("server.unknown_host_status"), "{error}");
    let error = parse("[cache]\nmemory_size = \"lots\"\n").unwrap_err().to_string();
    assert!(error.contains("memory_size"), "{error}");
}

#[test]
fn sites_weights_and_fallback() {
    let text = r#"
[origin]
urls = ["http://127.0.0.1:1", { url = "http://127.0.0.1:2", weight = 3 }]
fallback = "http://127.0.0.1:3"
hold_budget = "4s"

[[site]]
hosts = ["app.example", "*.cdn.example"]
[site.origin]
urls = ["http://127.0.0.1:4"]
"#;
    let config = parse(text).unwrap();
    assert_eq!(config.sites.len(), 2);
    assert_eq!(config.sites[0].hosts, ["app.example", "*.cdn.example"]);
    let default = &config.sites[1];
    assert!(default.hosts.is_empty());
    assert_eq!(default.origin.members.iter().map(|m| m.weight).collect::<Vec<_>>(), [1, 3]);
    assert!(default.origin.fallback.is_some());
    assert_eq!(default.origin.retry.hold_budget, Duration::from_secs(4));
}

#[test]
fn sizes_and_durations_parse_and_flags_win() {
    let text = "[server]\nlisten = [\"127.0.0.1:1\"]\nheader_read_timeout = \"3s\"\n[cache]\nmemory_size = \"64MiB\"\n[origin]\nurls = [\"http://127.0.0.1:9\"]\n";
    let config = parse(text).unwrap();
    assert_eq!(config.store.memory_size, 64 * 1024 * 1024);
    assert_eq!(config.server.header_read_timeout, Duration::from_secs(3));
    let file: FileConfig = toml::from_str(text).unwrap();
    let overrides =
        Overrides { listen: vec!["127.0.0.1:2".into()], memory_size: Some(ByteSize::mib(8)), ..Overrides::default() };
    let config = NodeConfig::from_file(file, Path::new("."), "t.toml", overrides).unwrap();
    assert_eq!(config.listen, vec!["127.0.0.1:2".parse::<SocketAddr>().unwrap()]);
    assert_eq!(config.store.memory_size, 8 * 1024 * 1024);
}
