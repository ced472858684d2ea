//! The independent js-libp2p client, `tests/interop-js/mk12-client.mjs`: one JSON job
//! in, one JSON result line out.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::{json, Value};

/// `tests/interop-js`.
pub fn interop_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/interop-js"))
}

/// Panic (never skip) when the js client cannot run.
pub fn require_installed() {
    require_installed_in(&interop_dir());
}

/// Panic unless `dir/node_modules` exists, telling to run `npm ci` in `dir`.
pub fn require_installed_in(dir: &Path) {
    assert!(
        dir.join("node_modules").is_dir(),
        "the js-libp2p interop client is not installed: {}/node_modules is missing; \
         run `npm ci` in {} (Node >= 20.19) and rerun the tests",
        dir.display(),
        dir.display()
    );
}

/// One request of a job.
pub fn request(protocol: &str, bytes: Option<&[u8]>) -> Value {
    json!({ "protocol": protocol, "hex": bytes.map(hex::encode) })
}

/// Run `job` (an object with `addr`, `requests`, …) and return the result object.
pub fn run(job: &Value) -> JsResult {
    require_installed();
    let dir = interop_dir();
    let out = Command::new("node")
        .arg(dir.join("mk12-client.mjs"))
        .arg(job.to_string())
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `node` for the js-libp2p interop client (install Node >= 20.19): {e}"
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "mk12-client.mjs exited with {}: stdout {stdout} stderr {stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("mk12-client.mjs printed no JSON: {stdout} {stderr}"));
    let v: Value = serde_json::from_str(line).expect("mk12-client.mjs JSON");
    eprintln!("[mk12-client.mjs] {line}");
    assert!(
        v["error"].is_null(),
        "js client failed: {} (result {v}, stderr {stderr})",
        v["error"]
    );
    JsResult(v)
}

/// The result line of the js client.
#[derive(Debug, Clone)]
pub struct JsResult(pub Value);

impl JsResult {
    /// Response `i`: the bytes the node wrote, after checking the node closed the stream
    /// cleanly with no client-side error.
    pub fn bytes(&self, i: usize) -> Vec<u8> {
        let r = &self.0["responses"][i];
        assert!(
            r["error"].is_null(),
            "js request {i} ({}) failed: {} ({r})",
            r["protocol"],
            r["error"]
        );
        assert_eq!(
            r["remoteClosed"], true,
            "js request {i}: the node did not close the stream ({r})"
        );
        let hex = r["hex"].as_str().unwrap_or_else(|| panic!("no hex: {r}"));
        hex::decode(hex).expect("response hex")
    }

    pub fn response(&self, i: usize) -> &Value {
        &self.0["responses"][i]
    }

    pub fn strings(&self, key: &str) -> Vec<String> {
        self.0[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} is not a list: {}", self.0))
            .iter()
            .map(|s| s.as_str().expect("a string").to_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[should_panic(expected = "node_modules is missing; run `npm ci` in /nonexistent/interop-js")]
    fn a_missing_install_fails_and_says_npm_ci() {
        super::require_installed_in(std::path::Path::new("/nonexistent/interop-js"));
    }
}
