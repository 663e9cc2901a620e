//! `sam local invoke` / `sam local start-api` against the dev stack: the
//! `--env-vars` file that points every function at the stack's emulator,
//! S3 and resources as a container reaches them, and the template those
//! commands read it with.
//!
//! SAM CLI (1.170.0, `samcli/local/lambdafn/env_vars.py`) sets in a
//! function's container only the variables the template declares for that
//! function, plus its own `AWS_*` ones (credentials and region from the
//! host's AWS profile or shell): a variable of the `--env-vars` file that
//! the template does not declare is dropped. `template.yaml` declares no
//! endpoint (on AWS there is none to declare), so [`write()`] also writes
//! a local template, `template.yaml` with every variable of the file
//! declared in `Globals` (empty: the file gives the values) and each
//! function's `CodeUri` pointing at what `sam build` left in
//! `.aws-sam/build/<LogicalId>`, read with `sam local … -t`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_yaml::{Mapping, Value};

use crate::stack::{project_root, Stack};

/// The name a container gives the machine running Docker (Docker Desktop
/// defines it; on Linux, `--add-host host.docker.internal:host-gateway`).
pub const CONTAINER_HOST: &str = "host.docker.internal";

/// What [`write()`] wrote.
#[derive(Debug, Clone)]
pub struct Files {
    pub env_vars: PathBuf,
    pub template: PathBuf,
}

/// `url` with its host replaced by `host` when it is this machine
/// (`127.0.0.1`, `localhost`, `0.0.0.0`, `[::1]`, `[::]`); other URLs and
/// other text as they are.
pub fn container_url(url: &str, host: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    if scheme != "http" && scheme != "https" {
        return url.to_owned();
    }
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let (name, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], &authority[i..]),
        _ => (authority, ""),
    };
    if ["127.0.0.1", "localhost", "0.0.0.0", "[::1]", "[::]"].contains(&name) {
        format!("{scheme}://{host}{port}{path}")
    } else {
        url.to_owned()
    }
}

/// Every function's environment as SAM's `--env-vars` file gives it:
/// `{"Parameters": {...}, "<LogicalId>": {"VAR": "value", ...}, ...}`.
/// `Parameters` (SAM's section for every function) holds what all
/// functions share; each function's own entry holds its whole
/// environment ([`Stack::function_env`]: the template's variables resolved
/// to the stack's physical names and parameters, the local credentials,
/// region and endpoints, its logical id as access key id), every URL on
/// this machine rewritten to `host`.
pub fn env_vars(stack: &Stack, host: &str) -> Result<serde_json::Value> {
    let mut file = serde_json::Map::new();
    let mut shared: Option<BTreeMap<String, String>> = None;
    for f in stack.template.functions()? {
        let env: BTreeMap<String, String> =
            stack.function_env(&f)?.into_iter().map(|(k, v)| (k, container_url(&v, host))).collect();
        shared = Some(match shared {
            None => env.clone(),
            Some(mut s) => {
                s.retain(|k, v| env.get(k) == Some(v));
                s
            }
        });
        file.insert(f.logical_id.clone(), serde_json::to_value(&env)?);
    }
    let shared = shared.ok_or_else(|| anyhow!("template.yaml has no function"))?;
    file.insert("Parameters".to_owned(), serde_json::to_value(&shared)?);
    Ok(serde_json::Value::Object(file))
}

/// `template.yaml` for `sam local`: every variable `env_vars` sets that a
/// function does not declare is declared in `Globals.Function.Environment`
/// (empty), and each function runs what `sam build` built for it
/// (`CodeUri: <project>/.aws-sam/build/<LogicalId>`, no `BuildMethod`).
pub fn local_template(stack: &Stack, env_vars: &serde_json::Value) -> Result<String> {
    let path = project_root().join("template.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut doc: Value = serde_yaml::from_str(&text).context("parsing template.yaml")?;
    let functions = stack.template.functions()?;
    let mut undeclared = std::collections::BTreeSet::new();
    for f in &functions {
        let vars = env_vars.get(&f.logical_id).and_then(|v| v.as_object()).into_iter().flatten();
        undeclared.extend(vars.map(|(k, _)| k.clone()).filter(|k| !f.environment.contains_key(k)));
    }
    let root = doc.as_mapping_mut().ok_or_else(|| anyhow!("template.yaml is not a mapping"))?;
    let globals = entry(root, "Globals");
    let function = entry(globals, "Function");
    function.remove("CodeUri");
    let variables = entry(entry(function, "Environment"), "Variables");
    for name in undeclared {
        variables.insert(Value::String(name), Value::String(String::new()));
    }
    let build = project_root().join(".aws-sam").join("build");
    let resources = entry(root, "Resources");
    for f in &functions {
        let resource = resources
            .get_mut(f.logical_id.as_str())
            .and_then(Value::as_mapping_mut)
            .ok_or_else(|| anyhow!("template.yaml has no resource {}", f.logical_id))?;
        if let Some(metadata) = resource.get_mut("Metadata").and_then(Value::as_mapping_mut) {
            metadata.remove("BuildMethod");
        }
        let code = build.join(&f.logical_id).to_string_lossy().into_owned();
        entry(resource, "Properties").insert(Value::String("CodeUri".into()), Value::String(code));
    }
    let header = "# Written by `cargo xtask dev` for `sam local invoke|start-api -t` (see local/src/samlocal.rs):\n\
                  # template.yaml with the variables of sam-env.json declared. Not for deploying.\n";
    Ok(format!("{header}{}", serde_yaml::to_string(&doc)?))
}

fn entry<'a>(m: &'a mut Mapping, key: &str) -> &'a mut Mapping {
    let v = m.entry(Value::String(key.to_owned())).or_insert_with(|| Value::Mapping(Mapping::new()));
    if !v.is_mapping() {
        *v = Value::Mapping(Mapping::new());
    }
    v.as_mapping_mut().expect("a mapping")
}

/// Writes the env-vars file and the local template into `dir`
/// (`target/dev/` for `cargo xtask dev`): `sam-env.json` and
/// `sam-template.yaml`.
pub fn write(stack: &Stack, host: &str, dir: &Path) -> Result<Files> {
    let vars = env_vars(stack, host)?;
    let template = local_template(stack, &vars)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = Files { env_vars: dir.join("sam-env.json"), template: dir.join("sam-template.yaml") };
    std::fs::write(&files.env_vars, serde_json::to_string_pretty(&vars)? + "\n")
        .with_context(|| format!("writing {}", files.env_vars.display()))?;
    std::fs::write(&files.template, template).with_context(|| format!("writing {}", files.template.display()))?;
    Ok(files)
}

/// The commands that use `files`, relative to the project folder when
/// they are under it. On Linux, Docker Engine defines no
/// `host.docker.internal`: `--add-host` maps it to the host's gateway.
pub fn commands(files: &Files, host: &str) -> Vec<String> {
    let rel = |p: &Path| p.strip_prefix(project_root()).unwrap_or(p).display().to_string();
    let add_host =
        if host == CONTAINER_HOST { format!(" --add-host {CONTAINER_HOST}:host-gateway") } else { String::new() };
    let common = format!("-t {} --env-vars {}{add_host}", rel(&files.template), rel(&files.env_vars));
    vec![
        format!("sam local invoke {common} CreateUpload -e events/create-upload.json"),
        format!("sam local start-api {common} --port 3001"),
    ]
}

/// Checks `file` (as [`env_vars`] made it) against `template.yaml`: one
/// entry per function, each with every variable the template gives that
/// function, no value left unresolved, every URL on `host`.
pub fn check(stack: &Stack, file: &serde_json::Value, host: &str) -> Result<()> {
    let file = file.as_object().ok_or_else(|| anyhow!("not a JSON object"))?;
    let functions = stack.template.functions()?;
    let mut expected: Vec<&str> = functions.iter().map(|f| f.logical_id.as_str()).collect();
    expected.push("Parameters");
    expected.sort();
    let mut keys: Vec<&str> = file.keys().map(String::as_str).collect();
    keys.sort();
    if keys != expected {
        bail!("entries {keys:?}, not one per function and Parameters: {expected:?}");
    }
    for f in &functions {
        let env = file[&f.logical_id].as_object().ok_or_else(|| anyhow!("{}: not an object", f.logical_id))?;
        for name in f.environment.keys() {
            if !env.contains_key(name) {
                bail!("{}: {name} of template.yaml is missing", f.logical_id);
            }
        }
        for name in ["AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            if !env.contains_key(name) {
                bail!("{}: {name} is missing", f.logical_id);
            }
        }
        for (name, value) in env {
            let value = value.as_str().ok_or_else(|| anyhow!("{}: {name} is not a string", f.logical_id))?;
            if value.contains("!Ref") || value.contains("${") || value.contains("Fn::") {
                bail!("{}: {name} is unresolved: {value}", f.logical_id);
            }
            if value.contains("://") && container_url(value, host) != value {
                bail!("{}: {name} names this machine, not {host}: {value}", f.logical_id);
            }
            let on_host = value
                .strip_prefix("http://")
                .and_then(|v| v.strip_prefix(host))
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(':') || rest.starts_with('/'));
            if (name.starts_with("AWS_ENDPOINT_URL") || name.ends_with("_URL")) && !on_host {
                bail!("{}: {name} is not on {host}: {value}", f.logical_id);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_on_this_machine_move_to_the_container_host() {
        let h = CONTAINER_HOST;
        assert_eq!(container_url("http://127.0.0.1:5055", h), "http://host.docker.internal:5055");
        assert_eq!(
            container_url("http://localhost:5055/123456789012/dev-cleanupqueue", h),
            "http://host.docker.internal:5055/123456789012/dev-cleanupqueue"
        );
        assert_eq!(container_url("http://0.0.0.0:9", h), "http://host.docker.internal:9");
        assert_eq!(container_url("http://[::1]:9/x", h), "http://host.docker.internal:9/x");
        assert_eq!(
            container_url("https://sqs.us-east-1.amazonaws.com/1/q", h),
            "https://sqs.us-east-1.amazonaws.com/1/q"
        );
        assert_eq!(container_url("dev-uploadstable", h), "dev-uploadstable");
    }

    /// The file for an unprovisioned stack with S3 apart, checked against
    /// `template.yaml`, and the local template declaring all it sets.
    #[test]
    fn env_vars_cover_every_function_of_the_template() {
        let mut stack = Stack::unprovisioned("dev").unwrap();
        stack.s3_endpoint = Some("http://127.0.0.1:5056".into());
        let file = env_vars(&stack, CONTAINER_HOST).unwrap();
        check(&stack, &file, CONTAINER_HOST).unwrap();
        assert_eq!(file["CreateUpload"]["AWS_ENDPOINT_URL_S3"], "http://host.docker.internal:5056");
        assert_eq!(file["Parameters"]["TABLE_NAME"], "dev-uploadstable");
        let template: Value = serde_yaml::from_str(&local_template(&stack, &file).unwrap()).unwrap();
        let declared = template["Globals"]["Function"]["Environment"]["Variables"].as_mapping().unwrap();
        for name in ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "S3_FORCE_PATH_STYLE", "AWS_ACCESS_KEY_ID"] {
            assert!(declared.contains_key(name), "{name}");
        }
        assert!(template["Resources"]["CreateUpload"]["Properties"]["CodeUri"]
            .as_str()
            .unwrap()
            .ends_with(".aws-sam/build/CreateUpload"));
    }
}
