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
}

impl Environment {
    /// Reads the variables the node uses.
    pub fn from_process() -> Environment {
        Environment {
            hostname: std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()),
            admin_token: std::env::var("HOLDFAST_ADMIN_TOKEN").ok(),
            runtime_dir: std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()).map(PathBuf::from),
            temp_dir: std::env::temp_dir(),
        }
    }
}

impl Default for Environment {
    fn default() -> Self {
        Environment { hostname: None, admin_token: None, runtime_dir: None, temp_dir: PathBuf::from("/tmp") }
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
            .finish()
    }
}
