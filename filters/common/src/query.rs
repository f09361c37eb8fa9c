//! Query-string edits on `:path`: set, add and remove parameters, values
//! rendered from templates and percent-encoded, untouched parameters kept
//! byte for byte.

use crate::value::Value;

use crate::body::Selection;
use crate::config::{Fields, Problems, join, tagged};
use crate::template::{Side, Template, Vars};
use filter_proxy::request::{
    Host, Request, encode_query_component, form_decode, query_pairs, split_query,
};

/// One edit, decoded from `{"set": {"name", "value"}}`,
/// `{"add": {"name", "value"}}` or `{"remove": {"name"}}`.
#[derive(Debug)]
pub enum QueryOp {
    /// Replace the first parameter `name` (dropping the others), or append.
    Set { name: String, value: Template },
    /// Append a parameter, keeping existing ones.
    Add { name: String, value: Template },
    /// Drop every parameter `name`.
    Remove { name: String },
}

impl QueryOp {
    /// Adds the request body fields its value reads (`%BODY(...)%`) to
    /// `read`.
    pub fn body_fields(&self, read: &mut Selection) {
        match self {
            QueryOp::Set { value, .. } | QueryOp::Add { value, .. } => value.body_fields(read),
            QueryOp::Remove { .. } => {}
        }
    }

    pub fn decode(value: &Value, at: &str, problems: &mut Problems) -> Option<QueryOp> {
        let (op, inner) = tagged(value, at, &["set", "add", "remove"], problems)?;
        let at = join(at, &op);
        let known: &[&str] = if op == "remove" {
            &["name"]
        } else {
            &["name", "value"]
        };
        let f = Fields::new(inner, &at, known, problems)?;
        let name = f.required_string("name", problems).map(str::to_owned);
        if name.as_deref() == Some("") {
            problems.push(&f.at("name"), "a query parameter name cannot be empty");
        }
        if op == "remove" {
            return Some(QueryOp::Remove { name: name? });
        }
        let value = Template::decode_field(&f, "value", Side::Request, problems);
        let (name, value) = (name?, value?);
        Some(if op == "set" {
            QueryOp::Set { name, value }
        } else {
            QueryOp::Add { name, value }
        })
    }

    /// Decodes the list at `f[key]`.
    pub fn decode_list(f: &Fields<'_>, key: &str, problems: &mut Problems) -> Vec<QueryOp> {
        let at = f.at(key);
        f.list(key, problems)
            .iter()
            .enumerate()
            .filter_map(|(i, op)| QueryOp::decode(op, &join(&at, &i), problems))
            .collect()
    }

    /// Applies the edit to the request's `:path`; `:path` is written only
    /// when it changes.
    pub fn apply<H: Host>(&self, request: &mut Request<H>) {
        // Removing a parameter the query lacks changes nothing; the auth
        // filter asks for it on every request whose token it strips.
        if let QueryOp::Remove { name } = self {
            let (_, query) = split_query(request.full_path());
            if !query_pairs(query).any(|(key, _)| *form_decode(key) == *name.as_bytes()) {
                return;
            }
        }
        let path = request.full_path().to_vec();
        let (base, query) = split_query(&path);
        let mut pairs: Vec<Vec<u8>> = query
            .split(|b| *b == b'&')
            .filter(|s| !s.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        // Names compare as the upstream will read them (decoded), so
        // `access%5Ftoken` is `access_token`.
        let is = |pair: &[u8], name: &str| {
            let key = pair.split(|b| *b == b'=').next().unwrap_or_default();
            *form_decode(key) == *name.as_bytes()
        };
        let encoded = |name: &str, value: &Template, request: &Request<H>| {
            let rendered = value.render(&Vars {
                request,
                response: None,
            });
            let mut pair = encode_query_component(name.as_bytes());
            pair.push(b'=');
            pair.extend(encode_query_component(&rendered));
            pair
        };
        match self {
            QueryOp::Set { name, value } => {
                let pair = encoded(name, value, request);
                match pairs.iter().position(|p| is(p, name)) {
                    Some(first) => {
                        let mut i = 0;
                        pairs.retain(|p| {
                            let keep = i == first || !is(p, name);
                            i += 1;
                            keep
                        });
                        if let Some(slot) = pairs.iter_mut().find(|p| is(p, name)) {
                            *slot = pair;
                        }
                    }
                    None => pairs.push(pair),
                }
            }
            QueryOp::Add { name, value } => pairs.push(encoded(name, value, request)),
            QueryOp::Remove { name } => pairs.retain(|p| !is(p, name)),
        }
        let mut new_path = base.to_vec();
        if !pairs.is_empty() {
            new_path.push(b'?');
            new_path.extend(pairs.join(&b'&'));
        }
        if new_path != path {
            request.headers.set(":path", &new_path);
        }
    }
}
