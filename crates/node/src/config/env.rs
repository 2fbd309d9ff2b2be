//! The process environment, read once.

use std::fmt;
use std::path::PathBuf;

/// What the node takes from its process environment. `main` reads it once
/// at startup ([`Environment::from_process`]) and hands it down; nothing
/// deeper reads the environment. [`Environment::default`] is an environment
/// with none of the variables set, for tests.
#[derive(Clone, PartialEq, Eq)]
pub struct Environment {
    /// `HOSTNAME` (the pod name on Kubernetes), when set and not empty:
    /// names the node in `Via` unless `server.node_name` does.
    pub hostname: Option<String>,
    /// `HOLDFAST_ADMIN_TOKEN`: the admin token when no token file is given.
    pub admin_token: Option<String>,
    /// `XDG_RUNTIME_DIR`, when set and not empty: control sockets live in
    /// its `holdfast` directory.
    pub runtime_dir: Option<PathBuf>,
    /// The temporary directory (`TMPDIR`, else `/tmp`): control sockets
    /// live in its `holdfast-<uid>` directory when there is no runtime
    /// directory.
    pub temp_dir: PathBuf,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
    /// set, and neither `OTEL_SDK_DISABLED=true` nor
    /// `OTEL_TRACES_EXPORTER=none`: request spans are exported (the
    /// exporter reads the other `OTEL_*` variables itself).
    pub otel_traces: bool,
    /// `OTEL_SERVICE_NAME`, or a `service.name` in
    /// `OTEL_RESOURCE_ATTRIBUTES`: else the service is `holdfast`.
    pub otel_service_named: bool,
}

impl Environment {
    /// Reads the variables the node uses.
    pub fn from_process() -> Environment {
        Environment {
            hostname: std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()),
            admin_token: std::env::var("HOLDFAST_ADMIN_TOKEN").ok(),
            runtime_dir: std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()).map(PathBuf::from),
            temp_dir: std::env::temp_dir(),
            otel_traces: otel_traces(&var),
            otel_service_named: var("OTEL_SERVICE_NAME").is_some()
                || var("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| a.contains("service.name=")),
        }
    }
}

/// A variable's value when set and not empty.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn otel_traces(var: &dyn Fn(&str) -> Option<String>) -> bool {
    let endpoint = var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() || var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some();
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    endpoint && !disabled
}

impl Default for Environment {
    fn default() -> Self {
        Environment {
            hostname: None,
            admin_token: None,
            runtime_dir: None,
            temp_dir: PathBuf::from("/tmp"),
            otel_traces: false,
            otel_service_named: false,
        }
    }
}

/// Says whether there is an admin token, not what it is.
impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Environment")
            .field("hostname", &self.hostname)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<redacted>"))
            .field("runtime_dir", &self.runtime_dir)
            .field("temp_dir", &self.temp_dir)
            .field("otel_traces", &self.otel_traces)
            .field("otel_service_named", &self.otel_service_named)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_are_on_with_an_endpoint_unless_disabled() {
        let with = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            otel_traces(&move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        };
        assert!(!with(&[]));
        assert!(with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")]));
        assert!(with(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/v1/traces")]));
        assert!(!with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_SDK_DISABLED", "TRUE")]));
        assert!(!with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_TRACES_EXPORTER", "none")]));
    }
}
