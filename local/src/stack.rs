//! The local stack: the tables, buckets and queues `template.yaml` declares,
//! created in the emulator under a name prefix, and the environment each
//! function gets there.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_yaml::{Mapping, Value};
use shared::objects::Objects;
use shared::queue::CleanupQueue;
use shared::store::Store;

use std::sync::Arc;
use std::time::Duration;

use crate::gateway::Gateway;
use crate::runtime::{binary_path, FunctionHost, Scaling};
use crate::template::{referenced_id, scalar, Function, Template};
use crate::waf::WebAcl;

pub use crate::{project_root, ACCOUNT, REGION};

/// The name `cargo xtask dev` gives its stack (every resource's prefix).
pub const DEV_STACK: &str = "dev";

/// The credentials and region every local client and function uses.
pub fn local_env(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", REGION),
        ("AWS_DEFAULT_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("S3_FORCE_PATH_STYLE", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// An SDK configuration for the emulator at `endpoint`.
pub fn sdk_config(endpoint: &str) -> SdkConfig {
    let creds = aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "local");
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(creds))
        .http_client(shared::aws::https_client())
        .build()
}

/// Parses `Name=value Name2=value2`, the form of `sam deploy --parameter-overrides`.
pub fn parse_overrides(text: &str) -> Result<BTreeMap<String, String>> {
    text.split_whitespace()
        .map(|pair| {
            let (k, v) =
                pair.split_once('=').ok_or_else(|| anyhow!("parameter override {pair:?} is not Name=value"))?;
            Ok((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// What `!Ref` and `!GetAtt X.Arn` give for a created resource, and the
/// other attributes `!GetAtt` reads (`StreamArn`, `QueueName`, `Name`).
#[derive(Debug, Clone)]
pub struct Physical {
    pub reference: String,
    pub arn: String,
    pub attributes: BTreeMap<String, String>,
}

impl Physical {
    fn new(reference: impl Into<String>, arn: String) -> Self {
        Physical { reference: reference.into(), arn, attributes: BTreeMap::new() }
    }

    fn with(mut self, attribute: &str, value: impl Into<String>) -> Self {
        self.attributes.insert(attribute.to_owned(), value.into());
        self
    }

    fn table(name: &str) -> Self {
        Physical::new(name, format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"))
    }

    fn bucket(name: &str) -> Self {
        Physical::new(name, format!("arn:aws:s3:::{name}"))
    }

    fn queue(url: String, name: &str) -> Self {
        Physical::new(url, format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")).with("QueueName", name)
    }

    fn event_bus(name: &str) -> Self {
        Physical::new(name, format!("arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{name}")).with("Name", name)
    }

    /// A rule on `bus` (its `!Ref` is `bus|name` for a custom bus, as
    /// CloudFormation's is).
    fn rule(bus: &str, name: &str) -> Self {
        Physical::new(format!("{bus}|{name}"), format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/{bus}/{name}"))
    }
}

/// A template resource the local stack has no instance of: left out by its
/// condition, or of a kind it does not create (an API destination, say).
#[derive(Debug)]
pub struct NotCreatedLocally(pub String);

impl std::fmt::Display for NotCreatedLocally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "template resource {} was not created locally", self.0)
    }
}

impl std::error::Error for NotCreatedLocally {}

#[derive(Debug, Clone)]
pub struct Stack {
    /// What `AWS::StackName` resolves to: the prefix of every resource name.
    pub name: String,
    pub endpoint: String,
    pub sdk: SdkConfig,
    /// Where S3 is, when not at `endpoint`: the verifying local S3
    /// (`crate::s3verify`), which checks signatures and checksums as moto
    /// does not. The functions get it as `AWS_ENDPOINT_URL_S3`.
    pub s3_endpoint: Option<String>,
    pub template: Template,
    pub resources: BTreeMap<String, Physical>,
    /// Template parameters set locally, as `sam deploy --parameter-overrides` would.
    pub parameters: BTreeMap<String, String>,
}

impl Stack {
    /// Creates every table, bucket and queue of `template.yaml` in the
    /// emulator at `endpoint`, named `<prefix>-<logical id in lowercase>`.
    pub async fn provision(endpoint: &str, prefix: &str) -> Result<Self> {
        Self::provision_with(endpoint, prefix, BTreeMap::new()).await
    }

    /// As [`Stack::provision`], with template parameters overridden.
    pub async fn provision_with(endpoint: &str, prefix: &str, parameters: BTreeMap<String, String>) -> Result<Self> {
        Self::provision_on(endpoint, None, prefix, parameters).await
    }

    /// As [`Stack::provision_with`], with S3 at `s3_endpoint` rather than
    /// in the emulator, when given.
    pub async fn provision_on(
        endpoint: &str,
        s3_endpoint: Option<&str>,
        prefix: &str,
        parameters: BTreeMap<String, String>,
    ) -> Result<Self> {
        let template = Template::load(&project_root().join("template.yaml"))?;
        for (name, value) in &parameters {
            if template.parameter_default(name).is_none() {
                bail!("template.yaml has no parameter {name}");
            }
            template.check_parameter(name, value)?;
        }
        let sdk = sdk_config(endpoint);
        let mut stack = Stack {
            name: prefix.to_owned(),
            endpoint: endpoint.to_owned(),
            sdk,
            s3_endpoint: s3_endpoint.map(str::to_owned),
            template,
            resources: BTreeMap::new(),
            parameters,
        };
        let ids: Vec<(String, String)> =
            stack.template.resources.iter().map(|(id, r)| (id.clone(), r.kind.clone())).collect();
        for (id, kind) in &ids {
            // A resource whose condition does not hold for these parameters
            // (the optional access-log bucket, say) is not part of the stack.
            if !stack.exists(id)? {
                continue;
            }
            let name = format!("{prefix}-{}", id.to_ascii_lowercase());
            match kind.as_str() {
                "AWS::DynamoDB::Table" => stack.create_table(id, &name).await?,
                "AWS::S3::Bucket" => stack.create_bucket(id, &name).await?,
                "AWS::SQS::Queue" => stack.create_queue(id, &name).await?,
                _ => {}
            }
        }
        // Redrive policies name other queues, so they follow every queue.
        for (id, kind) in &ids {
            if kind == "AWS::SQS::Queue" && stack.resources.contains_key(id) {
                stack.set_redrive(id).await?;
            }
        }
        // Event buses, then their rules (which name queues), then the
        // queues' policies (which name rules).
        for kind in ["AWS::Events::EventBus", "AWS::Events::Rule", "AWS::SQS::QueuePolicy"] {
            for (id, _) in ids.iter().filter(|(_, k)| k == kind) {
                if !stack.exists(id)? {
                    continue;
                }
                let name = format!("{prefix}-{}", id.to_ascii_lowercase());
                match kind {
                    "AWS::Events::EventBus" => stack.create_event_bus(id, &name).await?,
                    "AWS::Events::Rule" => stack.create_rule(id, &name).await?,
                    _ => stack.set_queue_policy(id).await?,
                }
            }
        }
        Ok(stack)
    }

    /// The stack as it would be named under `prefix`, with nothing created:
    /// for resolving template values (IAM resources, say) offline. With
    /// `prefix` `*`, every resolved name is a pattern matching any stack's.
    pub fn unprovisioned(prefix: &str) -> Result<Self> {
        let template = Template::load(&project_root().join("template.yaml"))?;
        let mut resources = BTreeMap::new();
        for (id, r) in &template.resources {
            let name = format!("{prefix}-{}", id.to_ascii_lowercase());
            let physical = match r.kind.as_str() {
                "AWS::DynamoDB::Table" if field(&r.properties, "StreamSpecification").is_some() => {
                    let table = Physical::table(&name);
                    let stream = format!("{}/stream/1970-01-01T00:00:00.000", table.arn);
                    table.with("StreamArn", stream)
                }
                "AWS::DynamoDB::Table" => Physical::table(&name),
                "AWS::S3::Bucket" => Physical::bucket(&name),
                "AWS::SQS::Queue" => Physical::queue(format!("http://localhost/{ACCOUNT}/{name}"), &name),
                _ => continue,
            };
            resources.insert(id.clone(), physical);
        }
        let endpoint = "http://127.0.0.1:9".to_owned();
        let mut stack = Stack {
            name: prefix.to_owned(),
            sdk: sdk_config(&endpoint),
            endpoint,
            s3_endpoint: None,
            template,
            resources,
            parameters: BTreeMap::new(),
        };
        // Buses are named by the template (from the stack's name), rules
        // after their bus.
        for kind in ["AWS::Events::EventBus", "AWS::Events::Rule"] {
            let ids: Vec<String> = stack.template.of_kind(kind).map(|(id, _)| id.to_owned()).collect();
            for id in ids {
                let name = format!("{prefix}-{}", id.to_ascii_lowercase());
                let physical = match kind {
                    "AWS::Events::EventBus" => Physical::event_bus(&stack.named(&id, &name)?),
                    _ => Physical::rule(&stack.rule_bus(&id)?, &name),
                };
                stack.resources.insert(id, physical);
            }
        }
        Ok(stack)
    }

    fn properties(&self, id: &str) -> &Mapping {
        &self.template.resources[id].properties
    }

    pub fn physical(&self, id: &str) -> Result<&Physical> {
        self.resources.get(id).ok_or_else(|| NotCreatedLocally(id.to_owned()).into())
    }

    /// Resolves a template value (`!Ref`, `!GetAtt X.Arn`, `!Sub` with
    /// `${X}`/`${X.Arn}`, plain scalars) to its local text.
    pub fn resolve(&self, v: &Value) -> Result<String> {
        if let Some(s) = scalar(v) {
            return Ok(s);
        }
        let Value::Tagged(t) = v else { bail!("cannot resolve {v:?}") };
        let tag = t.tag.to_string();
        let target = t.value.as_str().ok_or_else(|| anyhow!("cannot resolve {v:?}"))?;
        match tag.as_str() {
            "!Ref" => self.reference(target),
            "!GetAtt" => self.attribute(target),
            "!Sub" => {
                let mut out = String::new();
                let mut rest = target;
                while let Some(start) = rest.find("${") {
                    out.push_str(&rest[..start]);
                    let end = rest[start..].find('}').ok_or_else(|| anyhow!("unclosed ${{ in {target}"))? + start;
                    let name = &rest[start + 2..end];
                    out.push_str(&if name.contains('.') { self.attribute(name)? } else { self.reference(name)? });
                    rest = &rest[end + 1..];
                }
                out.push_str(rest);
                Ok(out)
            }
            _ => bail!("unsupported intrinsic {tag}"),
        }
    }

    fn reference(&self, name: &str) -> Result<String> {
        match name {
            "AWS::Region" => return Ok(REGION.to_owned()),
            "AWS::AccountId" => return Ok(ACCOUNT.to_owned()),
            "AWS::Partition" => return Ok("aws".to_owned()),
            "AWS::StackName" => return Ok(self.name.clone()),
            "AWS::URLSuffix" => return Ok("amazonaws.com".to_owned()),
            _ => {}
        }
        if let Some(r) = self.resources.get(name) {
            return Ok(r.reference.clone());
        }
        self.parameters
            .get(name)
            .cloned()
            .or_else(|| self.template.parameter_default(name))
            .ok_or_else(|| anyhow!("!Ref {name}: no such local resource or parameter"))
    }

    /// What `!GetAtt <id>.<attribute>` gives.
    pub fn attribute_of(&self, id: &str, attribute: &str) -> Result<String> {
        self.attribute(&format!("{id}.{attribute}"))
    }

    fn attribute(&self, target: &str) -> Result<String> {
        match target.split_once('.') {
            Some((id, "Arn")) => Ok(self.physical(id)?.arn.clone()),
            Some((id, attribute)) => self
                .physical(id)?
                .attributes
                .get(attribute)
                .cloned()
                .ok_or_else(|| anyhow!("unsupported attribute {target}")),
            None => bail!("unsupported attribute {target}"),
        }
    }

    /// The resource's `Name` property resolved, when it has one, else
    /// `default` (the local `<prefix>-<id>`).
    fn named(&self, id: &str, default: &str) -> Result<String> {
        match field(self.properties(id), "Name") {
            Some(v) => self.resolve(v),
            None => Ok(default.to_owned()),
        }
    }

    /// The name of the bus rule `id` is on (`default` without `EventBusName`).
    fn rule_bus(&self, id: &str) -> Result<String> {
        match field(self.properties(id), "EventBusName") {
            None => Ok("default".to_owned()),
            Some(v) => {
                let bus = self.resolve(v)?;
                Ok(bus.rsplit_once("event-bus/").map(|(_, name)| name.to_owned()).unwrap_or(bus))
            }
        }
    }

    async fn create_event_bus(&mut self, id: &str, default_name: &str) -> Result<()> {
        let name = self.named(id, default_name)?;
        aws_sdk_eventbridge::Client::new(&self.sdk)
            .create_event_bus()
            .name(&name)
            .send()
            .await
            .with_context(|| format!("creating event bus {name}"))?;
        self.resources.insert(id.to_owned(), Physical::event_bus(&name));
        Ok(())
    }

    /// A rule and its targets. Targets are delivered by the emulator, which
    /// delivers to queues; a rule with another kind of target (an API
    /// destination) is left out, and said so.
    async fn create_rule(&mut self, id: &str, name: &str) -> Result<()> {
        let properties = Value::Mapping(self.properties(id).clone());
        let resolved = self.resolve_unless_missing(&properties)?;
        let Some(resolved) = resolved else {
            eprintln!("local stack: rule {id} is left out: it targets what the local stack does not create");
            return Ok(());
        };
        let bus = self.rule_bus(id)?;
        let targets = seq(resolved.get("Targets"));
        if let Some(target) = targets
            .iter()
            .find(|t| !t.get("Arn").and_then(Value::as_str).is_some_and(|a| a.starts_with("arn:aws:sqs:")))
        {
            eprintln!(
                "local stack: rule {id} is left out: the emulator delivers to queues only, not to {:?}",
                target.get("Arn")
            );
            return Ok(());
        }
        let pattern = resolved.get("EventPattern").map(json_of).transpose()?;
        let client = aws_sdk_eventbridge::Client::new(&self.sdk);
        client
            .put_rule()
            .name(name)
            .event_bus_name(&bus)
            .set_event_pattern(pattern.map(|p| p.to_string()))
            .set_state(resolved.get("State").and_then(Value::as_str).map(aws_sdk_eventbridge::types::RuleState::from))
            .send()
            .await
            .with_context(|| format!("creating rule {name}"))?;
        let targets = targets
            .iter()
            .map(|t| {
                Ok(aws_sdk_eventbridge::types::Target::builder().id(text(t, "Id")?).arn(text(t, "Arn")?).build()?)
            })
            .collect::<Result<Vec<_>>>()?;
        if !targets.is_empty() {
            let out = client
                .put_targets()
                .rule(name)
                .event_bus_name(&bus)
                .set_targets(Some(targets))
                .send()
                .await
                .with_context(|| format!("adding the targets of rule {name}"))?;
            if out.failed_entry_count > 0 {
                bail!("rule {name}: targets refused: {:?}", out.failed_entries);
            }
        }
        self.resources.insert(id.to_owned(), Physical::rule(&bus, name));
        Ok(())
    }

    /// Sets a queue policy's document on each of its queues (the emulator
    /// keeps it; it does not enforce it).
    async fn set_queue_policy(&self, id: &str) -> Result<()> {
        let properties = Value::Mapping(self.properties(id).clone());
        let Some(resolved) = self.resolve_unless_missing(&properties)? else {
            eprintln!("local stack: queue policy {id} is left out: it names what the local stack does not create");
            return Ok(());
        };
        let document = json_of(resolved.get("PolicyDocument").ok_or_else(|| anyhow!("{id}: no PolicyDocument"))?)?;
        let client = aws_sdk_sqs::Client::new(&self.sdk);
        for url in seq(resolved.get("Queues")).iter().filter_map(scalar) {
            client
                .set_queue_attributes()
                .queue_url(&url)
                .attributes(QueueAttributeName::Policy, document.to_string())
                .send()
                .await
                .with_context(|| format!("setting {id} on {url}"))?;
        }
        Ok(())
    }

    /// [`Stack::resolve_value`], or `None` when the value names a resource
    /// this stack does not have (one the local stack never creates).
    fn resolve_unless_missing(&self, v: &Value) -> Result<Option<Value>> {
        match self.resolve_value(v) {
            Ok(v) => Ok(v),
            Err(e) if e.chain().any(|cause| cause.is::<NotCreatedLocally>()) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn create_table(&mut self, id: &str, name: &str) -> Result<()> {
        use aws_sdk_dynamodb::types::{StreamSpecification, StreamViewType};
        let p = self.properties(id).clone();
        let client = aws_sdk_dynamodb::Client::new(&self.sdk);
        let key_schema = |v: Option<&Value>| -> Result<Vec<KeySchemaElement>> {
            seq(v)
                .iter()
                .map(|k| {
                    Ok(KeySchemaElement::builder()
                        .attribute_name(text(k, "AttributeName")?)
                        .key_type(KeyType::from(text(k, "KeyType")?.as_str()))
                        .build()?)
                })
                .collect()
        };
        let mut req = client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_key_schema(Some(key_schema(field(&p, "KeySchema"))?));
        for a in seq(field(&p, "AttributeDefinitions")) {
            req = req.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(text(&a, "AttributeName")?)
                    .attribute_type(ScalarAttributeType::from(text(&a, "AttributeType")?.as_str()))
                    .build()?,
            );
        }
        for g in seq(field(&p, "GlobalSecondaryIndexes")) {
            let projection_field = g.as_mapping().and_then(|m| field(m, "Projection"));
            let projection =
                projection_field.map(|pr| text(pr, "ProjectionType")).transpose()?.unwrap_or_else(|| "ALL".to_owned());
            let non_key: Vec<String> =
                seq(projection_field.and_then(|pr| pr.as_mapping()).and_then(|m| field(m, "NonKeyAttributes")))
                    .iter()
                    .filter_map(scalar)
                    .collect();
            req = req.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(text(&g, "IndexName")?)
                    .set_key_schema(Some(key_schema(g.as_mapping().and_then(|m| field(m, "KeySchema")))?))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::from(projection.as_str()))
                            .set_non_key_attributes((!non_key.is_empty()).then_some(non_key))
                            .build(),
                    )
                    .build()?,
            );
        }
        if let Some(stream) = field(&p, "StreamSpecification") {
            req = req.stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::from(text(stream, "StreamViewType")?.as_str()))
                    .build()?,
            );
        }
        let created = req.send().await.with_context(|| format!("creating table {name}"))?;
        let stream_arn = created.table_description.and_then(|d| d.latest_stream_arn);
        if let Some(ttl) = field(&p, "TimeToLiveSpecification") {
            client
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(text(ttl, "AttributeName")?)
                        .enabled(true)
                        .build()?,
                )
                .send()
                .await
                .with_context(|| format!("enabling TTL on {name}"))?;
        }
        let mut table = Physical::table(name);
        if let Some(arn) = stream_arn {
            table = table.with("StreamArn", arn);
        }
        self.resources.insert(id.to_owned(), table);
        Ok(())
    }

    async fn create_bucket(&mut self, id: &str, name: &str) -> Result<()> {
        let p = self.properties(id).clone();
        let client = self.s3_client();
        client.create_bucket().bucket(name).send().await.with_context(|| format!("creating bucket {name}"))?;
        if let Some(rules) =
            field(&p, "LifecycleConfiguration").and_then(|l| l.as_mapping()).and_then(|l| field(l, "Rules"))
        {
            use aws_sdk_s3::types::{
                AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration,
                LifecycleRule, LifecycleRuleAndOperator, LifecycleRuleFilter, Tag,
            };
            let mut config = BucketLifecycleConfiguration::builder();
            for rule in seq(Some(rules)) {
                let days = rule
                    .as_mapping()
                    .and_then(|r| field(r, "AbortIncompleteMultipartUpload"))
                    .and_then(|a| a.as_mapping())
                    .and_then(|a| field(a, "DaysAfterInitiation"))
                    .and_then(Value::as_i64);
                let prefix = rule.as_mapping().and_then(|r| field(r, "Prefix")).and_then(scalar).unwrap_or_default();
                let tags = seq(rule.as_mapping().and_then(|r| field(r, "TagFilters")))
                    .iter()
                    .map(|t| Ok(Tag::builder().key(text(t, "Key")?).value(text(t, "Value")?).build()?))
                    .collect::<Result<Vec<_>>>()?;
                let filter = if tags.is_empty() {
                    LifecycleRuleFilter::builder().prefix(prefix).build()
                } else {
                    LifecycleRuleFilter::builder()
                        .and(LifecycleRuleAndOperator::builder().prefix(prefix).set_tags(Some(tags)).build())
                        .build()
                };
                let mut r = LifecycleRule::builder()
                    .id(text(&rule, "Id")?)
                    .status(ExpirationStatus::from(text(&rule, "Status")?.as_str()))
                    .filter(filter);
                if let Some(days) = rule.as_mapping().and_then(|r| field(r, "ExpirationInDays")).and_then(Value::as_i64)
                {
                    r = r.expiration(LifecycleExpiration::builder().days(days as i32).build());
                }
                if let Some(days) = days {
                    r = r.abort_incomplete_multipart_upload(
                        AbortIncompleteMultipartUpload::builder().days_after_initiation(days as i32).build(),
                    );
                }
                config = config.rules(r.build()?);
            }
            client
                .put_bucket_lifecycle_configuration()
                .bucket(name)
                .lifecycle_configuration(config.build()?)
                .send()
                .await
                .with_context(|| format!("setting the lifecycle of {name}"))?;
        }
        // The template's CORS rules, so that a browser's PUT to a presigned
        // URL meets locally the preflight it meets on AWS (with none, moto
        // would allow every origin, method and header).
        if let Some(rules) =
            field(&p, "CorsConfiguration").and_then(|c| c.as_mapping()).and_then(|c| field(c, "CorsRules"))
        {
            use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
            // Values may be `!Ref` a parameter (AllowedOrigins: the API's
            // CorsAllowOrigin).
            let texts = |rule: &Value, key: &str| -> Vec<String> {
                seq(rule.as_mapping().and_then(|r| field(r, key))).iter().filter_map(|v| self.resolve(v).ok()).collect()
            };
            let mut config = CorsConfiguration::builder();
            for rule in seq(Some(rules)) {
                let mut r = CorsRule::builder()
                    .set_allowed_methods(Some(texts(&rule, "AllowedMethods")))
                    .set_allowed_origins(Some(texts(&rule, "AllowedOrigins")))
                    .set_allowed_headers(Some(texts(&rule, "AllowedHeaders")))
                    .set_expose_headers(Some(texts(&rule, "ExposedHeaders")));
                if let Some(age) = rule.as_mapping().and_then(|r| field(r, "MaxAge")).and_then(Value::as_i64) {
                    r = r.max_age_seconds(age as i32);
                }
                config = config.cors_rules(r.build()?);
            }
            client
                .put_bucket_cors()
                .bucket(name)
                .cors_configuration(config.build()?)
                .send()
                .await
                .with_context(|| format!("setting the CORS rules of {name}"))?;
        }
        self.resources.insert(id.to_owned(), Physical::bucket(name));
        Ok(())
    }

    async fn create_queue(&mut self, id: &str, name: &str) -> Result<()> {
        let p = self.properties(id).clone();
        let client = aws_sdk_sqs::Client::new(&self.sdk);
        let mut req = client.create_queue().queue_name(name);
        for (prop, attr) in [
            ("VisibilityTimeout", QueueAttributeName::VisibilityTimeout),
            ("MessageRetentionPeriod", QueueAttributeName::MessageRetentionPeriod),
            ("ReceiveMessageWaitTimeSeconds", QueueAttributeName::ReceiveMessageWaitTimeSeconds),
        ] {
            if let Some(v) = field(&p, prop) {
                req = req.attributes(attr, self.resolve(v)?);
            }
        }
        let out = req.send().await.with_context(|| format!("creating queue {name}"))?;
        let url = out.queue_url.ok_or_else(|| anyhow!("no URL for queue {name}"))?;
        self.resources.insert(id.to_owned(), Physical::queue(url, name));
        Ok(())
    }

    async fn set_redrive(&self, id: &str) -> Result<()> {
        let Some(policy) = field(self.properties(id), "RedrivePolicy").and_then(Value::as_mapping) else {
            return Ok(());
        };
        let dlq = field(policy, "deadLetterTargetArn").ok_or_else(|| anyhow!("{id}: redrive without a target"))?;
        let max = field(policy, "maxReceiveCount").and_then(scalar).unwrap_or_else(|| "5".to_owned());
        let json = serde_json::json!({ "deadLetterTargetArn": self.resolve(dlq)?, "maxReceiveCount": max });
        aws_sdk_sqs::Client::new(&self.sdk)
            .set_queue_attributes()
            .queue_url(&self.physical(id)?.reference)
            .attributes(QueueAttributeName::RedrivePolicy, json.to_string())
            .send()
            .await
            .with_context(|| format!("setting the redrive policy of {id}"))?;
        Ok(())
    }

    /// The environment a function gets: the template's variables resolved
    /// against the local resources, plus the local AWS environment. Each
    /// function signs its requests with an access key id of its own, its
    /// logical id, so the emulator's call log says which function made each
    /// call (see `xtask::iam`).
    pub fn function_env(&self, function: &Function) -> Result<Vec<(String, String)>> {
        let mut env = local_env(&self.endpoint);
        for (k, v) in env.iter_mut() {
            if k == "AWS_ACCESS_KEY_ID" {
                *v = function.logical_id.clone();
            }
        }
        if let Some(s3) = &self.s3_endpoint {
            env.push(("AWS_ENDPOINT_URL_S3".to_owned(), s3.clone()));
        }
        for (k, v) in &function.environment {
            env.push((k.clone(), self.resolve(v)?));
        }
        Ok(env)
    }

    /// The shared crate's configuration as the functions see it.
    pub fn config(&self) -> Result<shared::Config> {
        let function =
            self.template.functions()?.into_iter().next().ok_or_else(|| anyhow!("template has no function"))?;
        let env: BTreeMap<String, String> = self.function_env(&function)?.into_iter().collect();
        Ok(shared::Config::from_lookup(&|k| env.get(k).cloned())?)
    }

    /// Starts `function`'s binary against a runtime API of its own, with the
    /// environment, timeout and memory the template gives it.
    pub async fn start_function(&self, function: &Function, echo: bool) -> Result<FunctionHost> {
        self.start_function_with(function, echo, &[]).await
    }

    /// As [`Stack::start_function`], with `extra` variables set over the
    /// template's (a log level, say).
    pub async fn start_function_with(
        &self,
        function: &Function,
        echo: bool,
        extra: &[(&str, &str)],
    ) -> Result<FunctionHost> {
        self.start_function_scaled(function, echo, extra, Scaling::instances(crate::max_instances()?)).await
    }

    /// As [`Stack::start_function_with`], scaled as `scaling` says
    /// ([`Scaling::managed`]: one process taking several invocations at
    /// once, as on Lambda Managed Instances).
    pub async fn start_function_scaled(
        &self,
        function: &Function,
        echo: bool,
        extra: &[(&str, &str)],
        scaling: Scaling,
    ) -> Result<FunctionHost> {
        self.start_executable(function, binary_path(&function.binary), echo, extra, scaling).await
    }

    /// As [`Stack::start_function_scaled`], running the executable at
    /// `path` (a release build, say); `extra` variables override the
    /// function's environment.
    pub async fn start_executable(
        &self,
        function: &Function,
        path: std::path::PathBuf,
        echo: bool,
        extra: &[(&str, &str)],
        scaling: Scaling,
    ) -> Result<FunctionHost> {
        let mut env = self.function_env(function)?;
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        FunctionHost::start_scaled(
            &function.logical_id,
            path,
            &env,
            Duration::from_secs(function.timeout_seconds),
            function.memory_mb,
            scaling,
            echo,
        )
        .await
    }

    /// Every function of the template, started, by logical id. The API
    /// functions take `UPLOADS_MAX_CONCURRENCY` invocations per instance
    /// (1 unless set: Lambda's model; more: Lambda Managed Instances').
    pub async fn start_functions(&self, echo: bool) -> Result<BTreeMap<String, (Function, Arc<FunctionHost>)>> {
        let mut hosts = BTreeMap::new();
        let max_instances = crate::max_instances()?;
        let api_concurrency = crate::max_concurrency()?;
        for f in self.template.functions()? {
            let max_concurrency = if f.routes.is_empty() { 1 } else { api_concurrency };
            let scaling = Scaling { max_instances, max_concurrency };
            let host = Arc::new(self.start_function_scaled(&f, echo, &[], scaling).await?);
            hosts.insert(f.logical_id.clone(), (f, host));
        }
        Ok(hosts)
    }

    /// The local API Gateway over `hosts`, serving the template's routes
    /// behind its web ACL, answering with its gateway responses.
    pub fn gateway(&self, hosts: &BTreeMap<String, (Function, Arc<FunctionHost>)>) -> Result<Gateway> {
        Ok(Gateway {
            routes: self.template.routes()?,
            functions: hosts.iter().map(|(id, (_, h))| (id.clone(), h.clone())).collect(),
            web_acl: self.web_acl()?,
            responses: self.template.gateway_responses(|v| self.resolve(v))?,
            cors: self.template.cors_with(|v| self.resolve(v))?,
        })
    }

    /// The web ACL associated with the API, as this stack's parameters make
    /// it: the association and the ACL exist only when their conditions
    /// hold, and the ACL's properties are resolved ([`Stack::resolve_value`]:
    /// `Fn::If` rules kept or dropped, limits and sizes filled in). No ACL
    /// is [`WebAcl::none`].
    pub fn web_acl(&self) -> Result<WebAcl> {
        let mut acls = Vec::new();
        for (id, association) in self.template.of_kind("AWS::WAFv2::WebACLAssociation") {
            if !self.exists(id)? {
                continue;
            }
            let acl = association
                .properties
                .get("WebACLArn")
                .and_then(referenced_id)
                .ok_or_else(|| anyhow!("{id}: WebACLArn is not !GetAtt of a web ACL"))?;
            if !self.exists(&acl)? {
                bail!("{id} associates {acl}, which these parameters leave out");
            }
            acls.push(acl);
        }
        match acls.as_slice() {
            [] => Ok(WebAcl::none()),
            [id] => {
                let properties = Value::Mapping(self.properties(id).clone());
                let resolved = self.resolve_value(&properties)?.unwrap_or_default();
                WebAcl::parse(&resolved).with_context(|| format!("web ACL {id}"))
            }
            _ => bail!("more than one web ACL is associated ({acls:?}); a stage takes one"),
        }
    }

    /// Evaluates the template's condition `name` against this stack's
    /// parameters, as CloudFormation does when it creates the stack.
    pub fn condition(&self, name: &str) -> Result<bool> {
        let definition =
            self.template.condition(name).ok_or_else(|| anyhow!("template.yaml has no condition {name}"))?;
        self.evaluate(definition).with_context(|| format!("condition {name}"))
    }

    /// Whether the template's resource `id` is part of this stack: it has no
    /// `Condition`, or its condition holds.
    pub fn exists(&self, id: &str) -> Result<bool> {
        let resource = self.template.resources.get(id).ok_or_else(|| anyhow!("template.yaml has no resource {id}"))?;
        match &resource.condition {
            None => Ok(true),
            Some(condition) => self.condition(condition),
        }
    }

    fn evaluate(&self, v: &Value) -> Result<bool> {
        let (function, args) = match v {
            Value::Mapping(m) if m.len() == 1 && m.contains_key("Condition") => {
                ("Condition".to_owned(), &m["Condition"])
            }
            _ => intrinsic(v).ok_or_else(|| anyhow!("not a condition function: {v:?}"))?,
        };
        let list = || args.as_sequence().map(Vec::as_slice).ok_or_else(|| anyhow!("Fn::{function} takes a list"));
        match function.as_str() {
            "Equals" => {
                let [a, b] = list()? else { bail!("Fn::Equals takes two values") };
                Ok(self.resolve(a)? == self.resolve(b)?)
            }
            "Not" => {
                let [c] = list()? else { bail!("Fn::Not takes one condition") };
                Ok(!self.evaluate(c)?)
            }
            "And" => list()?.iter().try_fold(true, |all, c| Ok(self.evaluate(c)? && all)),
            "Or" => list()?.iter().try_fold(false, |any, c| Ok(self.evaluate(c)? || any)),
            "Condition" => self.condition(args.as_str().ok_or_else(|| anyhow!("Condition names no condition"))?),
            other => bail!("Fn::{other} is not a condition function"),
        }
    }

    /// `v` with its intrinsic functions resolved as CloudFormation would:
    /// `Fn::If` becomes the branch its condition picks, `!Ref AWS::NoValue`
    /// removes the list item or mapping entry it stands for (`None` when it
    /// is `v` itself), and `!Ref`, `!GetAtt`, `!Sub` become their text
    /// ([`Stack::resolve`]).
    pub fn resolve_value(&self, v: &Value) -> Result<Option<Value>> {
        if let Some((function, args)) = intrinsic(v) {
            return match function.as_str() {
                "If" => {
                    let branches = args.as_sequence().map(Vec::as_slice).unwrap_or_default();
                    let [condition, yes, no] = branches else { bail!("Fn::If takes a condition and two values") };
                    let condition = condition.as_str().ok_or_else(|| anyhow!("Fn::If names no condition"))?;
                    self.resolve_value(if self.condition(condition)? { yes } else { no })
                }
                "Ref" if args.as_str() == Some("AWS::NoValue") => Ok(None),
                _ => Ok(Some(Value::String(self.resolve(v)?))),
            };
        }
        Ok(Some(match v {
            Value::Sequence(items) => Value::Sequence(
                items.iter().filter_map(|item| self.resolve_value(item).transpose()).collect::<Result<_>>()?,
            ),
            Value::Mapping(m) => {
                let mut out = Mapping::new();
                for (k, item) in m {
                    if let Some(item) = self.resolve_value(item)? {
                        out.insert(k.clone(), item);
                    }
                }
                Value::Mapping(out)
            }
            other => other.clone(),
        }))
    }

    /// The SDK configuration for S3: the emulator's, or the separate S3's.
    pub fn s3_sdk(&self) -> SdkConfig {
        match &self.s3_endpoint {
            None => self.sdk.clone(),
            Some(s3) => sdk_config(s3),
        }
    }

    pub fn s3_client(&self) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&self.s3_sdk()).force_path_style(true).build())
    }

    pub fn store(&self) -> Result<Store> {
        Ok(shared::aws::store(&self.sdk, &self.config()?))
    }

    pub fn objects(&self) -> Result<Objects> {
        Ok(shared::aws::objects(&self.s3_sdk(), &self.config()?))
    }

    pub fn cleanup_queue(&self) -> Result<CleanupQueue> {
        Ok(shared::aws::cleanup_queue(&self.sdk, &self.config()?))
    }
}

/// The function name and arguments of an intrinsic function, in either
/// form: `!Equals [...]` or `{"Fn::Equals": [...]}`, `!Ref X` or
/// `{"Ref": X}`, `!Condition X` (inside condition functions).
fn intrinsic(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => {
            let tag = t.tag.to_string();
            Some((tag.strip_prefix('!').unwrap_or(&tag).to_owned(), &t.value))
        }
        Value::Mapping(m) if m.len() == 1 => {
            let (k, args) = m.iter().next()?;
            let k = k.as_str()?;
            let name = k.strip_prefix("Fn::").or((k == "Ref").then_some(k))?;
            Some((name.to_owned(), args))
        }
        _ => None,
    }
}

fn field<'a>(m: &'a Mapping, key: &str) -> Option<&'a Value> {
    m.get(Value::String(key.to_owned()))
}

fn seq(v: Option<&Value>) -> Vec<Value> {
    v.and_then(Value::as_sequence).cloned().unwrap_or_default()
}

/// A resolved template value as JSON (an event pattern, a policy document).
fn json_of(v: &Value) -> Result<serde_json::Value> {
    serde_json::to_value(v).context("a template value that is not JSON")
}

fn text(v: &Value, key: &str) -> Result<String> {
    v.as_mapping().and_then(|m| field(m, key)).and_then(scalar).ok_or_else(|| anyhow!("template: missing {key}"))
}
