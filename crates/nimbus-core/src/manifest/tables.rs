//! Tables: `AWS::DynamoDB::Table` resources and the `tables:` section.
//!
//! BillingMode and throughput settings mean nothing to nimbus and are accepted silently;
//! a StreamSpecification gives the table a change stream (`streams.rs` reads the events
//! that consume it).

use crate::tables::{IndexSpec, KeyAttribute, Projection, ScalarType, TableSpec};

use super::tree::{Entry, Node, Pos, Value};
use super::{Cx, join_key};

/// Properties accepted and ignored, since they only concern AWS's capacity and billing.
const IGNORED: &[&str] = &[
    "TableName",
    "BillingMode",
    "ProvisionedThroughput",
    "OnDemandThroughput",
    "WarmThroughput",
    "TableClass",
    "DeletionProtectionEnabled",
];

/// One `KeySchema` entry.
struct KeyElement {
    name: String,
    range: bool,
    pos: Pos,
    key: String,
}

impl Cx<'_> {
    /// `AWS::DynamoDB::Table`.
    pub(super) fn cf_table(&mut self, name: &str, props: &[Entry], pos: Pos, key: &str) {
        let mut key_schema = None;
        let mut definitions: Vec<(String, ScalarType)> = Vec::new();
        let mut global_indexes = Vec::new();
        let mut local_indexes = Vec::new();
        let mut ttl_attribute = None;
        let mut stream_view = None;
        let mut index_nodes = Vec::new();
        for prop in props {
            let prop_key = join_key(key, &prop.key);
            match prop.key.as_str() {
                "KeySchema" => key_schema = Some(self.key_schema(&prop.value, &prop_key)),
                "AttributeDefinitions" => {
                    definitions = self.attribute_definitions(&prop.value, &prop_key)
                }
                "GlobalSecondaryIndexes" | "LocalSecondaryIndexes" => {
                    index_nodes.push((prop.key == "GlobalSecondaryIndexes", prop, prop_key))
                }
                "TimeToLiveSpecification" => {
                    ttl_attribute = self.ttl_specification(&prop.value, &prop_key)
                }
                "StreamSpecification" => {
                    stream_view = self.stream_specification(&prop.value, &prop_key)
                }
                other if IGNORED.contains(&other) => {}
                _ => self.warn(prop.key_pos, &prop_key, "not modelled by nimbus; ignored"),
            }
        }
        let Some(key_schema) = key_schema else {
            self.error(pos, key, "missing `KeySchema`");
            return;
        };
        let Some((partition_key, sort_key)) =
            self.resolve_keys(&key_schema, &definitions, pos, key)
        else {
            return;
        };
        for (global, prop, prop_key) in index_nodes {
            let Some(items) = self.sequence(&prop.value, &prop_key, "a list of indexes") else {
                continue;
            };
            for (item_idx, item) in items.iter().enumerate() {
                let item_key = format!("{prop_key}[{item_idx}]");
                if let Some(index) = self.cf_index(item, &item_key, &definitions) {
                    if !global && index.partition_key != partition_key {
                        let item_pos = self.read(item, &item_key).pos;
                        self.error(
                            item_pos,
                            &item_key,
                            "a local secondary index has the table's partition key",
                        );
                        continue;
                    }
                    if global {
                        global_indexes.push(index);
                    } else {
                        local_indexes.push(index);
                    }
                }
            }
        }
        self.declare_table(
            TableSpec {
                name: name.to_owned(),
                partition_key,
                sort_key,
                global_indexes,
                local_indexes,
                ttl_attribute,
                stream_view,
            },
            pos,
            key,
        );
    }

    fn key_schema(&mut self, node: &Node, key: &str) -> Vec<KeyElement> {
        let mut elements = Vec::new();
        let what = "a list of `{ AttributeName, KeyType }`";
        for (item_idx, item) in self
            .sequence(node, key, what)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let item_key = format!("{key}[{item_idx}]");
            let item_pos = self.read(item, &item_key).pos;
            let Some(fields) = self.mapping(item, &item_key, what) else {
                continue;
            };
            let name = self.field_string(&fields, "AttributeName", item_pos, &item_key);
            let kind = self.field_string(&fields, "KeyType", item_pos, &item_key);
            let range = match kind.as_deref() {
                Some("HASH") => false,
                Some("RANGE") => true,
                Some(other) => {
                    let message = format!("expected HASH or RANGE, got {other:?}");
                    self.error(item_pos, &join_key(&item_key, "KeyType"), message);
                    continue;
                }
                None => continue,
            };
            if let Some(name) = name {
                elements.push(KeyElement {
                    name,
                    range,
                    pos: item_pos,
                    key: item_key,
                });
            }
        }
        elements
    }

    fn attribute_definitions(&mut self, node: &Node, key: &str) -> Vec<(String, ScalarType)> {
        let mut definitions = Vec::new();
        let what = "a list of `{ AttributeName, AttributeType }`";
        for (item_idx, item) in self
            .sequence(node, key, what)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let item_key = format!("{key}[{item_idx}]");
            let item_pos = self.read(item, &item_key).pos;
            let Some(fields) = self.mapping(item, &item_key, what) else {
                continue;
            };
            let name = self.field_string(&fields, "AttributeName", item_pos, &item_key);
            let kind = self.field_string(&fields, "AttributeType", item_pos, &item_key);
            match (name, kind.as_deref().map(|k| (k, ScalarType::from_name(k)))) {
                (Some(name), Some((_, Some(kind)))) => definitions.push((name, kind)),
                (_, Some((other, None))) => {
                    let message = format!("expected S, N or B, got {other:?}");
                    self.error(item_pos, &join_key(&item_key, "AttributeType"), message);
                }
                _ => {}
            }
        }
        definitions
    }

    /// The partition and sort key of a key schema, typed by the attribute definitions.
    fn resolve_keys(
        &mut self,
        elements: &[KeyElement],
        definitions: &[(String, ScalarType)],
        pos: Pos,
        key: &str,
    ) -> Option<(KeyAttribute, Option<KeyAttribute>)> {
        let mut partition = None;
        let mut sort = None;
        let mut failed = elements.is_empty();
        for element in elements {
            let Some((_, kind)) = definitions.iter().find(|(name, _)| *name == element.name) else {
                let message = format!(
                    "`{}` is a key attribute but not in `AttributeDefinitions`; add `{{ AttributeName: {}, AttributeType: S }}`",
                    element.name, element.name
                );
                self.error(element.pos, &element.key, message);
                failed = true;
                continue;
            };
            let attribute = KeyAttribute {
                name: element.name.clone(),
                kind: *kind,
            };
            let slot = if element.range {
                &mut sort
            } else {
                &mut partition
            };
            if slot.is_some() {
                let which = if element.range { "RANGE" } else { "HASH" };
                self.error(element.pos, &element.key, format!("a second {which} key"));
                continue;
            }
            *slot = Some(attribute);
        }
        match partition {
            Some(partition) => Some((partition, sort)),
            None if failed => None,
            None => {
                self.error(pos, key, "the `KeySchema` needs a HASH key");
                None
            }
        }
    }

    fn cf_index(
        &mut self,
        node: &Node,
        key: &str,
        definitions: &[(String, ScalarType)],
    ) -> Option<IndexSpec> {
        let pos = self.read(node, key).pos;
        let fields = self.mapping(
            node,
            key,
            "an index with `IndexName`, `KeySchema` and `Projection`",
        )?;
        let name = self.field_string(&fields, "IndexName", pos, key);
        let mut key_schema = None;
        let mut projection = Projection::All;
        for field in &fields {
            let field_key = join_key(key, &field.key);
            match field.key.as_str() {
                "IndexName" => {}
                "KeySchema" => key_schema = Some(self.key_schema(&field.value, &field_key)),
                "Projection" => projection = self.cf_projection(&field.value, &field_key),
                "ProvisionedThroughput"
                | "OnDemandThroughput"
                | "WarmThroughput"
                | "ContributorInsightsSpecification" => {}
                _ => self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored"),
            }
        }
        let Some(key_schema) = key_schema else {
            self.error(pos, key, "missing `KeySchema`");
            return None;
        };
        let (partition_key, sort_key) = self.resolve_keys(&key_schema, definitions, pos, key)?;
        Some(IndexSpec {
            name: name?,
            partition_key,
            sort_key,
            projection,
        })
    }

    fn cf_projection(&mut self, node: &Node, key: &str) -> Projection {
        let pos = self.read(node, key).pos;
        let Some(fields) = self.mapping(node, key, "a mapping with `ProjectionType`") else {
            return Projection::All;
        };
        let kind = self.field_string(&fields, "ProjectionType", pos, key);
        let mut attributes = Vec::new();
        if let Some(entry) = fields.iter().find(|f| f.key == "NonKeyAttributes") {
            let attributes_key = join_key(key, "NonKeyAttributes");
            for (item_idx, item) in self
                .sequence(&entry.value, &attributes_key, "a list of attribute names")
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let item_key = format!("{attributes_key}[{item_idx}]");
                let item = self.read(item, &item_key);
                if let Some(name) = self.string(&item, &item_key, "an attribute name") {
                    attributes.push(name);
                }
            }
        }
        match kind.as_deref() {
            Some("ALL") | None => Projection::All,
            Some("KEYS_ONLY") => Projection::KeysOnly,
            Some("INCLUDE") => Projection::Include(attributes),
            Some(other) => {
                let message = format!("expected ALL, KEYS_ONLY or INCLUDE, got {other:?}");
                self.error(pos, &join_key(key, "ProjectionType"), message);
                Projection::All
            }
        }
    }

    fn ttl_specification(&mut self, node: &Node, key: &str) -> Option<String> {
        let pos = self.read(node, key).pos;
        let fields = self.mapping(node, key, "a mapping with `AttributeName` and `Enabled`")?;
        let enabled = match fields.iter().find(|f| f.key == "Enabled") {
            Some(entry) => self.boolean(&entry.value, &join_key(key, "Enabled"))?,
            None => false,
        };
        let name = self.field_string(&fields, "AttributeName", pos, key);
        enabled.then_some(name).flatten()
    }

    fn stream_specification(&mut self, node: &Node, key: &str) -> Option<String> {
        let pos = self.read(node, key).pos;
        let fields = self.mapping(node, key, "a mapping with `StreamViewType`")?;
        // `StreamEnabled: false` (the form DynamoDB's own API uses) turns the stream off.
        if let Some(entry) = fields.iter().find(|e| e.key == "StreamEnabled")
            && self.boolean(&entry.value, &join_key(key, "StreamEnabled")) == Some(false)
        {
            return None;
        }
        let entry = fields.iter().find(|e| e.key == "StreamViewType");
        let Some(entry) = entry else {
            self.error(pos, key, "missing `StreamViewType`");
            return None;
        };
        let value = self.read(&entry.value, &join_key(key, "StreamViewType"));
        self.stream_view(&value, &join_key(key, "StreamViewType"))
    }

    /// A StreamViewType.
    fn stream_view(&mut self, node: &Node, key: &str) -> Option<String> {
        let view = self.string(node, key, "a StreamViewType")?;
        match view.as_str() {
            "NEW_IMAGE" | "OLD_IMAGE" | "NEW_AND_OLD_IMAGES" | "KEYS_ONLY" => Some(view),
            other => {
                let message = format!(
                    "expected NEW_IMAGE, OLD_IMAGE, NEW_AND_OLD_IMAGES or KEYS_ONLY, got {other:?}"
                );
                self.error(node.pos, key, message);
                None
            }
        }
    }

    /// A required string field of a mapping.
    fn field_string(
        &mut self,
        fields: &[Entry],
        name: &str,
        pos: Pos,
        key: &str,
    ) -> Option<String> {
        let field_key = join_key(key, name);
        match fields.iter().find(|f| f.key == name) {
            Some(entry) => {
                let value = self.read(&entry.value, &field_key);
                self.string(&value, &field_key, "a string")
            }
            None => {
                self.error(pos, key, format!("missing `{name}`"));
                None
            }
        }
    }

    /// `tables: { NAME: { partitionKey, sortKey, indexes, ttl, stream } }` in nimbus.yaml
    /// (`stream` a StreamViewType such as `NEW_AND_OLD_IMAGES`); a key
    /// is a name (a string attribute) or `{ name, type: S | N | B }`.
    pub(super) fn table_section_item(
        &mut self,
        name: &str,
        node: Option<&Node>,
        pos: Pos,
        key: &str,
    ) {
        let Some(node) = node else {
            self.error(
                pos,
                key,
                "a table needs a `partitionKey`, as in `todos: { partitionKey: id }`",
            );
            return;
        };
        let Some(fields) = self.mapping(node, key, "a mapping with `partitionKey`") else {
            return;
        };
        let mut partition_key = None;
        let mut sort_key = None;
        let mut global_indexes = Vec::new();
        let mut ttl_attribute = None;
        let mut stream_view = None;
        for field in &fields {
            let field_key = join_key(key, &field.key);
            match field.key.as_str() {
                "stream" => {
                    let value = self.read(&field.value, &field_key);
                    stream_view = self.stream_view(&value, &field_key);
                }
                "partitionKey" => partition_key = self.section_key(&field.value, &field_key),
                "sortKey" => sort_key = self.section_key(&field.value, &field_key),
                "indexes" => {
                    let Some(indexes) =
                        self.mapping(&field.value, &field_key, "a mapping of index names to keys")
                    else {
                        continue;
                    };
                    for index in indexes {
                        let index_key = join_key(&field_key, &index.key);
                        if let Some(spec) =
                            self.section_index(&index.key, &index.value, index.key_pos, &index_key)
                        {
                            global_indexes.push(spec);
                        }
                    }
                }
                "ttl" => {
                    let value = self.read(&field.value, &field_key);
                    ttl_attribute = self.string(&value, &field_key, "an attribute name");
                }
                _ => self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored"),
            }
        }
        let Some(partition_key) = partition_key else {
            if !fields.iter().any(|f| f.key == "partitionKey") {
                self.error(pos, key, "missing `partitionKey`, as in `partitionKey: id`");
            }
            return;
        };
        self.declare_table(
            TableSpec {
                name: name.to_owned(),
                partition_key,
                sort_key,
                global_indexes,
                local_indexes: Vec::new(),
                ttl_attribute,
                stream_view,
            },
            pos,
            key,
        );
    }

    fn section_index(&mut self, name: &str, node: &Node, pos: Pos, key: &str) -> Option<IndexSpec> {
        let fields = self.mapping(node, key, "a mapping with `partitionKey`")?;
        let mut partition_key = None;
        let mut sort_key = None;
        let mut projection = Projection::All;
        for field in &fields {
            let field_key = join_key(key, &field.key);
            match field.key.as_str() {
                "partitionKey" => partition_key = self.section_key(&field.value, &field_key),
                "sortKey" => sort_key = self.section_key(&field.value, &field_key),
                "projection" => {
                    let value = self.read(&field.value, &field_key);
                    projection = match &value.value {
                        Value::Str(s) if s == "all" => Projection::All,
                        Value::Str(s) if s == "keys" => Projection::KeysOnly,
                        Value::Seq(items) => Projection::Include(
                            items
                                .iter()
                                .filter_map(|item| match &item.value {
                                    Value::Str(s) => Some(s.clone()),
                                    _ => None,
                                })
                                .collect(),
                        ),
                        _ => {
                            let message = format!(
                                "expected `all`, `keys` or a list of attribute names, got {}",
                                value.describe()
                            );
                            self.error(value.pos, &field_key, message);
                            Projection::All
                        }
                    };
                }
                _ => self.warn(field.key_pos, &field_key, "not modelled by nimbus; ignored"),
            }
        }
        if partition_key.is_none() && !fields.iter().any(|f| f.key == "partitionKey") {
            self.error(pos, key, "missing `partitionKey`");
        }
        Some(IndexSpec {
            name: name.to_owned(),
            partition_key: partition_key?,
            sort_key,
            projection,
        })
    }

    fn section_key(&mut self, node: &Node, key: &str) -> Option<KeyAttribute> {
        let node = self.read(node, key);
        match &node.value {
            Value::Str(name) => Some(KeyAttribute {
                name: name.clone(),
                kind: ScalarType::S,
            }),
            Value::Map(fields) => {
                let name = self.field_string(fields, "name", node.pos, key)?;
                let kind = match fields.iter().find(|f| f.key == "type") {
                    Some(entry) => {
                        let type_key = join_key(key, "type");
                        let value = self.read(&entry.value, &type_key);
                        let text = self.string(&value, &type_key, "S, N or B")?;
                        match ScalarType::from_name(&text) {
                            Some(kind) => kind,
                            None => {
                                self.error(
                                    value.pos,
                                    &type_key,
                                    format!("expected S, N or B, got {text:?}"),
                                );
                                return None;
                            }
                        }
                    }
                    None => ScalarType::S,
                };
                Some(KeyAttribute { name, kind })
            }
            Value::Invalid => None,
            _ => {
                let message = format!(
                    "expected an attribute name or `{{ name, type: S | N | B }}`, got {}",
                    node.describe()
                );
                self.error(node.pos, key, message);
                None
            }
        }
    }
}
