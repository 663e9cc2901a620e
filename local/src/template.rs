//! Reads `template.yaml`: the resources the local stack creates, the
//! functions it runs and the routes it serves all come from there, so the
//! local stack and the deployed one cannot drift apart.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_yaml::{Mapping, Value};

#[derive(Debug, Clone)]
pub struct Template {
    pub resources: BTreeMap<String, Resource>,
    globals_function: Mapping,
    parameters: Mapping,
    conditions: Mapping,
}

#[derive(Debug, Clone)]
pub struct Resource {
    pub kind: String,
    pub properties: Mapping,
    pub metadata: Mapping,
    /// The name of the condition the resource exists under, if any.
    pub condition: Option<String>,
}

/// An API route: `method path` → function.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub method: String,
    pub path: String,
    pub function: String,
}

/// An answer API Gateway gives itself (`GatewayResponses` of the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayResponse {
    /// `None` (`DEFAULT_4XX`, `DEFAULT_5XX`): the status of the response
    /// it stands for.
    pub status: Option<u16>,
    /// Static header values, without the quotes the template gives them.
    pub headers: Vec<(String, String)>,
    /// The `application/json` template; `$context.requestId` and
    /// `$context.error.messageString` are filled in.
    pub body: String,
}

impl GatewayResponse {
    pub fn render(&self, request_id: &str) -> String {
        self.render_error(request_id, "")
    }

    /// The body for an answer whose error message is `message`
    /// (`$context.error.messageString` is that message as a JSON string).
    pub fn render_error(&self, request_id: &str, message: &str) -> String {
        let quoted = serde_json::Value::String(message.to_owned()).to_string();
        self.body.replace("$context.requestId", request_id).replace("$context.error.messageString", &quoted)
    }
}

/// The API's CORS settings (`Cors` of the `AWS::Serverless::Api`), as SAM
/// turns them into an `OPTIONS` method on every path: header values
/// without their quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    pub allow_origin: String,
    pub allow_methods: String,
    pub allow_headers: String,
    pub max_age: Option<String>,
}

/// A function as the local stack runs it.
#[derive(Debug, Clone)]
pub struct Function {
    pub logical_id: String,
    /// The cargo binary (`Metadata.BuildProperties.Binary`).
    pub binary: String,
    /// Environment variables, unresolved (`!Ref` and friends).
    pub environment: BTreeMap<String, Value>,
    pub timeout_seconds: u64,
    pub memory_mb: u64,
    pub routes: Vec<Route>,
    /// Logical id of the queue feeding it, for SQS event sources.
    pub queue: Option<String>,
    /// Rate in seconds, for `Schedule` event sources (`rate(N minutes)`).
    pub schedule_seconds: Option<u64>,
    /// The table stream feeding it, for `DynamoDB` event sources.
    pub stream: Option<StreamSource>,
}

/// A `DynamoDB` event source: how Lambda's event source mapping reads the
/// table's stream and hands it to the function
/// ([`crate::streams::StreamFeeder`] does the same locally).
#[derive(Debug, Clone)]
pub struct StreamSource {
    /// Logical id of the table (`Stream: !GetAtt <Table>.StreamArn`).
    pub table: String,
    /// `TRIM_HORIZON` or `LATEST`.
    pub starting_position: String,
    /// Records per invocation at most (Lambda's default: 100).
    pub batch_size: usize,
    /// `FilterCriteria.Filters[].Pattern`, parsed: a record reaches the
    /// function when it matches any of them (all, when there are none).
    pub filters: Vec<serde_json::Value>,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]`.
    pub report_batch_item_failures: bool,
    pub bisect_on_error: bool,
    /// Retries of a failing batch before it is given up; `None`: until its
    /// records expire (`-1`, Lambda's default).
    pub maximum_retry_attempts: Option<u32>,
    /// Age past which a record is given up; `None`: never (`-1`).
    pub maximum_record_age_seconds: Option<u64>,
    /// Logical id of the queue given-up batches are reported to
    /// (`DestinationConfig.OnFailure.Destination: !GetAtt <Queue>.Arn`).
    pub on_failure: Option<String>,
}

fn get<'a>(map: &'a Mapping, key: &str) -> Option<&'a Value> {
    map.get(Value::String(key.to_owned()))
}

fn mapping(v: Option<&Value>) -> Mapping {
    v.and_then(Value::as_mapping).cloned().unwrap_or_default()
}

impl Template {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self> {
        let doc: Value = serde_yaml::from_str(text).context("parsing template.yaml")?;
        let root = doc.as_mapping().ok_or_else(|| anyhow!("template is not a mapping"))?;
        let mut resources = BTreeMap::new();
        for (k, v) in mapping(get(root, "Resources")) {
            let id = k.as_str().ok_or_else(|| anyhow!("resource id is not a string"))?.to_owned();
            let v = v.as_mapping().ok_or_else(|| anyhow!("resource {id} is not a mapping"))?;
            let kind = get(v, "Type").and_then(Value::as_str).ok_or_else(|| anyhow!("resource {id} has no Type"))?;
            resources.insert(
                id,
                Resource {
                    kind: kind.to_owned(),
                    properties: mapping(get(v, "Properties")),
                    metadata: mapping(get(v, "Metadata")),
                    condition: get(v, "Condition").and_then(Value::as_str).map(str::to_owned),
                },
            );
        }
        let globals = mapping(get(root, "Globals"));
        Ok(Self {
            resources,
            globals_function: mapping(get(&globals, "Function")),
            parameters: mapping(get(root, "Parameters")),
            conditions: mapping(get(root, "Conditions")),
        })
    }

    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a str, &'a Resource)> + 'a {
        self.resources.iter().filter(move |(_, r)| r.kind == kind).map(|(k, r)| (k.as_str(), r))
    }

    /// A parameter's default value.
    pub fn parameter_default(&self, name: &str) -> Option<String> {
        let p = get(&self.parameters, name)?.as_mapping()?;
        scalar(get(p, "Default")?)
    }

    /// Checks a value given for parameter `name` as CloudFormation does
    /// before it creates anything: `AllowedValues`, `AllowedPattern` (the
    /// whole value must match), and `MinValue`/`MaxValue` of a `Number`.
    pub fn check_parameter(&self, name: &str, value: &str) -> Result<()> {
        let p = get(&self.parameters, name)
            .and_then(Value::as_mapping)
            .ok_or_else(|| anyhow!("template.yaml has no parameter {name}"))?;
        let why = get(p, "ConstraintDescription").and_then(scalar).unwrap_or_default();
        if let Some(allowed) = get(p, "AllowedValues").and_then(Value::as_sequence) {
            if !allowed.iter().filter_map(scalar).any(|a| a == value) {
                bail!("parameter {name}: {value:?} is not one of its AllowedValues");
            }
        }
        if let Some(pattern) = get(p, "AllowedPattern").and_then(scalar) {
            let anchored = format!("^(?:{pattern})$");
            let re = regex_lite::Regex::new(&anchored).with_context(|| format!("parameter {name}: AllowedPattern"))?;
            if !re.is_match(value) {
                bail!("parameter {name}: {value:?} does not match its AllowedPattern {pattern} ({why})");
            }
        }
        if get(p, "Type").and_then(scalar).as_deref() == Some("Number") {
            let n: f64 = value.parse().map_err(|_| anyhow!("parameter {name}: {value:?} is not a number"))?;
            let bound = |key: &str| get(p, key).and_then(scalar).and_then(|b| b.parse::<f64>().ok());
            if bound("MinValue").is_some_and(|min| n < min) || bound("MaxValue").is_some_and(|max| n > max) {
                bail!("parameter {name}: {value} is out of its MinValue..MaxValue");
            }
        }
        Ok(())
    }

    /// A condition's definition (`!Equals`, `!Not`, `!And`, `!Or`,
    /// `!Condition`), unevaluated; [`crate::stack::Stack::condition`]
    /// evaluates it against the stack's parameters.
    pub fn condition(&self, name: &str) -> Option<&Value> {
        get(&self.conditions, name)
    }

    pub fn functions(&self) -> Result<Vec<Function>> {
        let mut out = Vec::new();
        for (id, r) in self.of_kind("AWS::Serverless::Function") {
            let binary = get(&mapping(get(&r.metadata, "BuildProperties")), "Binary")
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow!("function {id} has no Metadata.BuildProperties.Binary"))?
                .to_owned();
            let mut environment = BTreeMap::new();
            for source in [&self.globals_function, &r.properties] {
                let vars = mapping(get(&mapping(get(source, "Environment")), "Variables"));
                for (k, v) in vars {
                    environment.insert(k.as_str().unwrap_or_default().to_owned(), v);
                }
            }
            let number = |key: &str, default: u64| {
                get(&r.properties, key)
                    .or_else(|| get(&self.globals_function, key))
                    .and_then(Value::as_u64)
                    .unwrap_or(default)
            };
            let mut function = Function {
                logical_id: id.to_owned(),
                binary,
                environment,
                timeout_seconds: number("Timeout", 3),
                memory_mb: number("MemorySize", 128),
                routes: Vec::new(),
                queue: None,
                schedule_seconds: None,
                stream: None,
            };
            for (_, event) in mapping(get(&r.properties, "Events")) {
                let event = event.as_mapping().cloned().unwrap_or_default();
                let props = mapping(get(&event, "Properties"));
                match get(&event, "Type").and_then(Value::as_str) {
                    Some("Api") => {
                        let path = get(&props, "Path").and_then(Value::as_str);
                        let method = get(&props, "Method").and_then(Value::as_str);
                        let (Some(path), Some(method)) = (path, method) else {
                            bail!("function {id} has an Api event without Path and Method");
                        };
                        function.routes.push(Route {
                            method: method.to_ascii_uppercase(),
                            path: path.to_owned(),
                            function: id.to_owned(),
                        });
                    }
                    Some("SQS") => {
                        function.queue = get(&props, "Queue").and_then(referenced_id);
                    }
                    Some("Schedule") | Some("ScheduleV2") => {
                        let expr = get(&props, "Schedule").or_else(|| get(&props, "ScheduleExpression"));
                        function.schedule_seconds = expr.and_then(Value::as_str).and_then(rate_seconds);
                    }
                    Some("DynamoDB") => {
                        function.stream = Some(stream_source(&props).with_context(|| format!("function {id}"))?);
                    }
                    _ => {}
                }
            }
            out.push(function);
        }
        Ok(out)
    }

    /// The API's gateway responses by type (`THROTTLED`, `WAF_FILTERED`,
    /// `DEFAULT_4XX`…), header values resolved by `resolve` (`!Sub
    /// "'${Parameter}'"`, as the stack resolves it).
    pub fn gateway_responses(
        &self,
        resolve: impl Fn(&Value) -> Result<String>,
    ) -> Result<BTreeMap<String, GatewayResponse>> {
        let mut out = BTreeMap::new();
        for (id, api) in self.of_kind("AWS::Serverless::Api") {
            for (kind, response) in mapping(get(&api.properties, "GatewayResponses")) {
                let kind = kind.as_str().ok_or_else(|| anyhow!("{id}: gateway response type is not a string"))?;
                let response = response.as_mapping().cloned().unwrap_or_default();
                let status = match get(&response, "StatusCode") {
                    None if kind.starts_with("DEFAULT_") => None,
                    None => bail!("{id}: gateway response {kind} has no StatusCode"),
                    Some(code) => Some(
                        scalar(code)
                            .and_then(|s| s.parse().ok())
                            .ok_or_else(|| anyhow!("{id}: gateway response {kind}: StatusCode"))?,
                    ),
                };
                let headers = mapping(get(&mapping(get(&response, "ResponseParameters")), "Headers"))
                    .into_iter()
                    .map(|(k, v)| {
                        let value = resolve(&v).ok().and_then(|v| unquote(&v));
                        match (k.as_str(), value) {
                            (Some(k), Some(v)) => Ok((k.to_owned(), v)),
                            _ => bail!("{id}: gateway response {kind} has a header that is not a quoted static value"),
                        }
                    })
                    .collect::<Result<_>>()?;
                let body = get(&mapping(get(&response, "ResponseTemplates")), "application/json")
                    .and_then(scalar)
                    .ok_or_else(|| anyhow!("{id}: gateway response {kind} has no application/json template"))?;
                out.insert(kind.to_owned(), GatewayResponse { status, headers, body });
            }
        }
        Ok(out)
    }

    /// The API's CORS settings, values resolved by `resolve`; `None`
    /// without a `Cors` property.
    pub fn cors_with(&self, resolve: impl Fn(&Value) -> Result<String>) -> Result<Option<Cors>> {
        let Some((id, api)) = self.of_kind("AWS::Serverless::Api").next() else { return Ok(None) };
        let Some(cors) = get(&api.properties, "Cors") else { return Ok(None) };
        let field = |name: &str| -> Result<Option<String>> {
            match cors.get(name) {
                None => Ok(None),
                Some(v) => {
                    let text = resolve(v)?;
                    unquote(&text).map(Some).ok_or_else(|| anyhow!("{id}: Cors.{name} is not a quoted value: {text}"))
                }
            }
        };
        let allow_origin = field("AllowOrigin")?.ok_or_else(|| anyhow!("{id}: Cors without AllowOrigin"))?;
        Ok(Some(Cors {
            allow_origin,
            allow_methods: field("AllowMethods")?.unwrap_or_default(),
            allow_headers: field("AllowHeaders")?.unwrap_or_default(),
            max_age: field("MaxAge")?,
        }))
    }

    pub fn routes(&self) -> Result<Vec<Route>> {
        let mut routes: Vec<Route> = self.functions()?.into_iter().flat_map(|f| f.routes).collect();
        routes.sort();
        Ok(routes)
    }
}

/// `'value'` without its quotes, as API Gateway takes static header values.
fn unquote(v: &str) -> Option<String> {
    v.strip_prefix('\'')?.strip_suffix('\'').map(str::to_owned)
}

/// The logical id behind `!Ref X` or `!GetAtt X.Attr`.
pub fn referenced_id(v: &Value) -> Option<String> {
    let Value::Tagged(t) = v else { return None };
    let target = t.value.as_str()?;
    match t.tag.to_string().as_str() {
        "!Ref" => Some(target.to_owned()),
        "!GetAtt" => Some(target.split('.').next()?.to_owned()),
        _ => None,
    }
}

/// A scalar's text: strings as they are, numbers and booleans printed.
pub fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A `DynamoDB` event's properties as a [`StreamSource`].
fn stream_source(props: &Mapping) -> Result<StreamSource> {
    let table = get(props, "Stream")
        .and_then(|v| match v {
            Value::Tagged(t) if t.tag == "!GetAtt" => t.value.as_str()?.strip_suffix(".StreamArn"),
            _ => None,
        })
        .ok_or_else(|| anyhow!("a DynamoDB event's Stream is not !GetAtt <Table>.StreamArn"))?;
    let number = |key: &str| get(props, key).and_then(Value::as_i64);
    let bounded = |key: &str| match number(key) {
        None | Some(-1) => Ok(None),
        Some(n) if n >= 0 => Ok(Some(n as u64)),
        Some(n) => bail!("{key} is {n}"),
    };
    let filters = get(&mapping(get(props, "FilterCriteria")), "Filters")
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|f| {
            let pattern =
                f.get("Pattern").and_then(Value::as_str).ok_or_else(|| anyhow!("a filter without Pattern"))?;
            serde_json::from_str(pattern).with_context(|| format!("filter pattern {pattern}"))
        })
        .collect::<Result<Vec<serde_json::Value>>>()?;
    let on_failure = get(&mapping(get(&mapping(get(props, "DestinationConfig")), "OnFailure")), "Destination")
        .map(|d| referenced_id(d).ok_or_else(|| anyhow!("OnFailure.Destination is not !GetAtt <Queue>.Arn")))
        .transpose()?;
    Ok(StreamSource {
        table: table.to_owned(),
        starting_position: get(props, "StartingPosition").and_then(scalar).unwrap_or_else(|| "LATEST".to_owned()),
        batch_size: number("BatchSize").unwrap_or(100).clamp(1, 10_000) as usize,
        filters,
        report_batch_item_failures: get(props, "FunctionResponseTypes")
            .and_then(Value::as_sequence)
            .is_some_and(|t| t.iter().any(|t| t == "ReportBatchItemFailures")),
        bisect_on_error: get(props, "BisectBatchOnFunctionError").and_then(Value::as_bool).unwrap_or(false),
        maximum_retry_attempts: bounded("MaximumRetryAttempts")?.map(|n| n as u32),
        maximum_record_age_seconds: bounded("MaximumRecordAgeInSeconds")?,
        on_failure,
    })
}

/// `rate(5 minutes)` → 300.
fn rate_seconds(expr: &str) -> Option<u64> {
    let inner = expr.strip_prefix("rate(")?.strip_suffix(')')?;
    let (n, unit) = inner.split_once(' ')?;
    let n: u64 = n.parse().ok()?;
    let unit = match unit.trim_end_matches('s') {
        "minute" => 60,
        "hour" => 3600,
        "day" => 86400,
        _ => return None,
    };
    Some(n * unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(rate_seconds("rate(5 minutes)"), Some(300));
        assert_eq!(rate_seconds("rate(1 hour)"), Some(3600));
        assert_eq!(rate_seconds("cron(0 * * * ? *)"), None);
    }
}

#[cfg(test)]
mod parameter_tests {
    use super::*;

    /// A stack with a limit WAF would refuse fails locally as it would on
    /// AWS, before anything is created.
    #[test]
    fn overrides_are_checked_against_the_parameters_constraints() {
        let t = Template::load(&crate::stack::project_root().join("template.yaml")).unwrap();
        for ok in ["0", "10", "30000"] {
            t.check_parameter("KeyRateLimit", ok).unwrap();
        }
        for bad in ["1", "9", "abc", "-5"] {
            assert!(t.check_parameter("KeyRateLimit", bad).is_err(), "{bad}");
        }
        assert!(t.check_parameter("LogLevel", "LOUD").is_err());
        t.check_parameter("LogLevel", "WARN").unwrap();
        assert!(t.check_parameter("PartSizeBytes", "100").is_err(), "under MinValue");
        t.check_parameter("PartSizeBytes", "5242880").unwrap();
    }
}
