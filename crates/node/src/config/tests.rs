use bytesize::ByteSize;

use super::*;

fn parse(text: &str) -> anyhow::Result<NodeConfig> {
    let file: FileConfig = toml::from_str(text).map_err(|e| anyhow::anyhow!("t.toml: {e}"))?;
    NodeConfig::from_file(file, Path::new("."), "t.toml", Overrides::default(), &Environment::default())
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
    let error = parse(
        "[[site]]\nhosts = [\"a.example\"]\n[site.origin]\nurls = [\"http://127.0.0.1:1\"]\nquery_params = \"some\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("t.toml: site[0].origin.query_params") && error.contains("\"some\""), "{error}");
    let error =
        parse("[origin]\nurls = [\"http://127.0.0.1:1\"]\nquery_params = [\"v\", \"a=b\"]\n").unwrap_err().to_string();
    assert!(error.contains("t.toml: origin.query_params") && error.contains("\"a=b\""), "{error}");
    let config = parse("[origin]\nurls = [\"http://127.0.0.1:1\"]\nquery_params = [\"v\"]\n").unwrap();
    let keep_v = holdfast_frontend::QueryParams::Keep(vec!["v".into()]);
    assert_eq!(config.sites[0].query, holdfast_frontend::QueryPolicy { params: keep_v.clone(), sort: false });
    let config =
        parse("[origin]\nurls = [\"http://127.0.0.1:1\"]\nquery_params = [\"v\"]\nquery_sort = true\n").unwrap();
    assert_eq!(config.sites[0].query, holdfast_frontend::QueryPolicy { params: keep_v, sort: true });
    let error = parse("[origin]\nurls = [\"http://127.0.0.1:1\"]\nquery_sort = \"yes\"\n").unwrap_err().to_string();
    assert!(error.contains("t.toml") && error.contains("query_sort"), "{error}");
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
    // Below the 5 s after which Node.js and Apache close idle keep-alive
    // connections: a relayed PUT must not be sent on one as it closes.
    assert_eq!(default.origin.pool_idle_timeout, Duration::from_secs(4));
    let config = parse("[origin]\nurls = [\"http://127.0.0.1:1\"]\nidle_timeout = \"90s\"\n").unwrap();
    assert_eq!(config.sites[0].origin.pool_idle_timeout, Duration::from_secs(90));
}

#[test]
fn sizes_and_durations_parse_and_flags_win() {
    let text = "[server]\nlisten = [\"127.0.0.1:1\"]\nheader_read_timeout = \"3s\"\n[cache]\nmemory_size = \"64MiB\"\n[origin]\nurls = [\"http://127.0.0.1:9\"]\n";
    let config = parse(text).unwrap();
    assert_eq!(config.store.memory_size, 64 * 1024 * 1024);
    assert_eq!(config.server.header_read_timeout, Duration::from_secs(3));
    let file: FileConfig = toml::from_str(text).unwrap();
    let overrides = Overrides {
        listen: vec!["127.0.0.1:2".parse().unwrap()],
        memory_size: Some(ByteSize::mib(8)),
        ..Overrides::default()
    };
    let config = NodeConfig::from_file(file, Path::new("."), "t.toml", overrides, &Environment::default()).unwrap();
    assert_eq!(config.listen, vec!["127.0.0.1:2".parse::<SocketAddr>().unwrap()]);
    assert_eq!(config.store.memory_size, 8 * 1024 * 1024);
}

#[test]
fn values_are_typed_by_serde_and_named_when_wrong() {
    use crate::access_log::{Destination, Format};
    let text = "[server]\nunknown_host_status = 404\n[cache]\nfsync = \"always\"\ndir = \"cache\"\n[admin]\nlisten = \"\"\n\
                [log]\naccess = \"stdout\"\naccess_format = \"plain\"\n\
                [origin]\nurls = [\"http://127.0.0.1:9\"]\nselection = \"consistent-hash\"\n";
    let config = parse(text).unwrap();
    assert_eq!(config.handler.unknown_host_status, http::StatusCode::NOT_FOUND);
    assert_eq!(config.disk.map(|d| d.fsync), Some(holdfast_cache::FsyncPolicy::Always));
    assert_eq!(config.admin_listen, None, "\"\" turns the admin listener off");
    assert_eq!(config.access_log, Some((Destination::Stdout, Format::Plain)));
    assert_eq!(config.sites[0].origin.selection, holdfast_origin::Selection::ConsistentHash);
    let config = parse("[origin]\nurls = [\"http://127.0.0.1:9\"]\n").unwrap();
    assert_eq!(config.listen, [DEFAULT_LISTEN]);
    assert_eq!(config.admin_listen, Some(DEFAULT_ADMIN_LISTEN));
    assert_eq!(config.handler.unknown_host_status, http::StatusCode::MISDIRECTED_REQUEST);
    for (text, key) in [
        ("[cache]\nfsync = \"sometimes\"\n", "cache.fsync"),
        ("[admin]\nlisten = \"nope\"\n", "admin.listen"),
        ("[tls]\nlisten = [\"127.0.0.1:1\", \"x\"]\n", "tls.listen[1]"),
        ("[tls]\nh3_address_validation = \"maybe\"\n", "tls.h3_address_validation"),
        ("[log]\naccess_format = \"xml\"\n", "log.access_format"),
        ("[origin]\nselection = \"random\"\n", "origin.selection"),
        (
            "[[site]]\nhosts = [\"a.example\"]\n[site.origin]\nurls = [\"http://x:1\"]\nselection = 1\n",
            "site[0].origin.selection",
        ),
    ] {
        let error = parse(text).unwrap_err().to_string();
        assert!(error.contains(key) && error.contains("t.toml"), "{key}: {error}");
    }
}

#[test]
fn the_environment_is_passed_in() {
    let text = "[server]\nlisten = [\"127.0.0.1:8080\"]\n[origin]\nurls = [\"http://127.0.0.1:9\"]\n";
    let env = Environment {
        hostname: Some("pod-7".into()),
        admin_token: Some(" 0123456789abcdef \n".into()),
        runtime_dir: Some("/run/user/1000".into()),
        ..Environment::default()
    };
    let file: FileConfig = toml::from_str(text).unwrap();
    let config = NodeConfig::from_file(file, Path::new("/etc/holdfast"), "t.toml", Overrides::default(), &env).unwrap();
    assert_eq!(config.handler.node_name, "pod-7:8080");
    assert_eq!(config.admin_token, Some(AdminToken::Value("0123456789abcdef".into())));
    let socket = config.control_socket_path(config.listen[0]);
    assert!(socket.starts_with("/run/user/1000/holdfast"), "{}", socket.display());
    assert!(!format!("{env:?}").contains("0123456789abcdef"), "the token is not logged");
    // Without the variables: the built-in name, no token.
    let file: FileConfig = toml::from_str(text).unwrap();
    let config =
        NodeConfig::from_file(file, Path::new("."), "t.toml", Overrides::default(), &Environment::default()).unwrap();
    assert_eq!(config.handler.node_name, "holdfast:8080");
    assert_eq!(config.admin_token, None);
    // A token file wins over the variable, relative to the config file.
    let file: FileConfig = toml::from_str(&format!("[admin]\ntoken_file = \"secret/token\"\n{text}")).unwrap();
    let config = NodeConfig::from_file(file, Path::new("/etc/holdfast"), "t.toml", Overrides::default(), &env).unwrap();
    assert_eq!(config.admin_token, Some(AdminToken::File("/etc/holdfast/secret/token".into())));
}

#[test]
fn overrides_are_the_serve_flags() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Serve {
        #[command(flatten)]
        overrides: Overrides,
    }
    let args = ["serve", "--listen", "127.0.0.1:1", "--origin", "dir:.", "--admin-listen", "", "--memory-size", "8MiB"];
    let overrides = Serve::try_parse_from(args).unwrap().overrides;
    assert_eq!(overrides.admin_listen, Some(OptionalListen(None)));
    let config =
        NodeConfig::from_file(FileConfig::default(), Path::new("."), "t.toml", overrides, &Environment::default())
            .unwrap();
    assert_eq!(config.listen, ["127.0.0.1:1".parse::<SocketAddr>().unwrap()]);
    assert_eq!(config.admin_listen, None);
    assert_eq!(config.store.memory_size, 8 * 1024 * 1024);
    assert!(Serve::try_parse_from(["serve", "--listen", "nowhere"]).is_err());
    assert!(Serve::try_parse_from(["serve", "--tls-cert", "cert.pem"]).is_err(), "--tls-key is required too");
}

#[test]
fn the_h3_socket_buffer_has_a_default_a_key_and_a_bound() {
    let with = |line: &str| {
        let text = format!(
            "[origin]\nurls = [\"http://127.0.0.1:9\"]\n[tls]\nlisten = [\"127.0.0.1:1\"]\nh3 = true\n{line}\n\
             [[tls.certificate]]\ncert = \"c.pem\"\nkey = \"k.pem\"\n"
        );
        parse(&text).map(|config| config.tls.and_then(|tls| tls.h3).map(|h3| h3.socket_buffer))
    };
    assert_eq!(with("").unwrap(), Some(holdfast_frontend::h3::DEFAULT_SOCKET_BUFFER));
    assert_eq!(with("h3_socket_buffer = \"1MiB\"").unwrap(), Some(1024 * 1024));
    assert_eq!(with("h3_socket_buffer = \"0\"").unwrap(), Some(0), "0 keeps the system's size");
    let error = with("h3_socket_buffer = \"3GiB\"").unwrap_err().to_string();
    assert!(error.contains("tls.h3_socket_buffer") && error.contains("t.toml"), "{error}");
}
