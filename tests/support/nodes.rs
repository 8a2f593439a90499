//! Projects, folders, experiments and files as nodes: their creation
//! (`POST /api/namespaces/{ns}/nodes`, JSON or a multipart file upload) and
//! the tree GraphQL answers.

use serde_json::{Map, Value, json};

use super::conn::{Raw, header};
use super::multipart::multipart;
use super::routes::{bad, id_of};
use super::state::{State, StoredFile};

fn project(st: &mut State, ns: &str, slug: &str) -> u64 {
    if let Some(p) = st.projects.iter().find(|p| p.0 == ns && p.1 == slug) {
        return p.2;
    }
    let id = st.id();
    st.projects.push((ns.to_owned(), slug.to_owned(), id));
    id
}

pub(super) fn create_node(st: &mut State, ns: &str, body: &Value) -> (u16, Value) {
    let ty = body.get("type").and_then(Value::as_str).unwrap_or("");
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if name.is_empty() {
        return bad("name required");
    }
    if ty == "PROJECT" {
        let slug = body
            .get("slug")
            .and_then(Value::as_str)
            .unwrap_or(&name)
            .to_owned();
        let pid = project(st, ns, &slug);
        return (
            201,
            json!({"project": {"id": pid, "slug": slug, "name": name}, "node": {"id": pid, "type": "PROJECT"}}),
        );
    }
    let pid = match id_of(body.get("projectId")) {
        Some(p) => p,
        None => match body.get("projectSlug").and_then(Value::as_str) {
            Some(slug) => project(st, ns, slug),
            None => return bad("projectId or projectSlug required"),
        },
    };
    let parent: Value = match body.get("parentId") {
        Some(Value::String(s)) if s == "ROOT" => Value::Null,
        Some(v) => match id_of(Some(v)) {
            Some(p) => p.into(),
            None => return bad("bad parentId"),
        },
        None => Value::Null,
    };
    if !matches!(ty, "FOLDER" | "EXPERIMENT") {
        return bad("unknown node type");
    }
    let existing = st
        .nodes
        .iter()
        .find(|n| {
            n["type"] == ty
                && n["projectId"].as_u64() == Some(pid)
                && n["parentId"] == parent
                && n["name"] == name.as_str()
        })
        .cloned();
    let node = match existing {
        Some(n) => n,
        None => {
            let id = st.id();
            let mut n = json!({"id": id, "type": ty, "name": name, "projectId": pid, "parentId": parent, "status": null});
            if ty == "EXPERIMENT" {
                let eid = st.id();
                n["experimentId"] = eid.into();
                n["status"] = "RUNNING".into();
                st.experiments.insert(eid, name.clone());
            }
            st.nodes.push(n.clone());
            n
        }
    };
    let proj = st.projects.iter().find(|p| p.2 == pid).cloned();
    let project = json!({"id": pid, "slug": proj.as_ref().map(|p| p.1.clone())});
    if ty == "EXPERIMENT" {
        let eid = node["experimentId"].clone();
        (
            201,
            json!({"experiment": {"id": eid, "name": name, "projectId": pid}, "node": node, "project": project}),
        )
    } else {
        (201, json!({"node": node, "project": project}))
    }
}

pub(super) fn file_node(st: &mut State, raw: &Raw) -> (u16, Value) {
    let ct = header(&raw.headers, "content-type").unwrap_or("");
    let parts = multipart(ct, &raw.body);
    let field = |name: &str| -> Option<String> {
        parts
            .iter()
            .find(|p| p.name == name && p.filename.is_none())
            .map(|p| String::from_utf8_lossy(&p.data).into_owned())
    };
    let Some(file) = parts
        .iter()
        .find(|p| p.name == "file" && p.filename.is_some())
    else {
        return bad("a file part is required");
    };
    if field("type").as_deref() != Some("FILE") {
        return bad("type must be FILE");
    }
    let id = st.id();
    let name = field("name").unwrap_or_default();
    let exp: Option<u64> = field("experimentId").and_then(|e| e.parse().ok());
    let parent: Option<u64> = field("parentId").and_then(|e| e.parse().ok());
    let node = json!({"id": id, "type": "FILE", "name": name, "experimentId": exp,
        "parentId": parent, "projectId": field("projectId").and_then(|p| p.parse::<u64>().ok())});
    st.nodes.push(node.clone());
    st.files.push(StoredFile {
        name: name.clone(),
        parent,
        experiment: exp,
        checksum: field("checksum").unwrap_or_default(),
        content_type: file.content_type.clone().unwrap_or_default(),
        content: file.data.clone(),
    });
    (
        201,
        json!({"node": node, "physicalFile": {"id": st.id(), "filename": name,
            "checksum": field("checksum"), "sizeBytes": file.data.len().to_string(),
            "contentType": file.content_type}}),
    )
}

/// GraphQL: a superset answer (the SDK reads only what it asked for).
pub(super) fn graphql(st: &mut State, body: &Value) -> (u16, Value) {
    let vars = body.get("variables").cloned().unwrap_or(Value::Null);
    let mut data = Map::new();
    if let Some(ns) = vars.get("namespace").and_then(Value::as_str) {
        let projects: Vec<Value> = st
            .projects
            .iter()
            .filter(|p| p.0 == ns)
            .map(|p| json!({"id": p.2, "slug": p.1}))
            .collect();
        data.insert("namespace".into(), json!({"projects": projects}));
    }
    let exp = id_of(vars.get("experimentId"));
    let exp_node = exp.and_then(|e| {
        st.nodes
            .iter()
            .find(|n| n["experimentId"].as_u64() == Some(e))
            .cloned()
    });
    let pid = exp_node
        .as_ref()
        .and_then(|n| n["projectId"].as_u64())
        .or_else(|| id_of(vars.get("projectId")))
        .or_else(|| {
            let slug = vars.get("projectSlug")?.as_str()?;
            st.projects.iter().find(|p| p.1 == slug).map(|p| p.2)
        });
    if let Some(pid) = pid {
        let proj = st.projects.iter().find(|p| p.2 == pid).cloned();
        let slug = proj.as_ref().map(|p| p.1.clone());
        let ns = proj.as_ref().map(|p| p.0.clone());
        if let Some(n) = &exp_node {
            data.insert(
                "experimentById".into(),
                json!({"id": n["experimentId"], "projectId": pid, "project": {"slug": slug, "name": slug, "namespace": {"slug": ns}}}),
            );
            data.insert("experimentNode".into(), json!({"id": n["id"]}));
        }
        fn tree(nodes: &[Value], pid: u64, parent: &Value) -> Vec<Value> {
            nodes
                .iter()
                .filter(|n| n["projectId"].as_u64() == Some(pid) && &n["parentId"] == parent)
                .map(|n| {
                    let mut m = n.clone();
                    m["children"] = Value::Array(tree(nodes, pid, &n["id"]));
                    m
                })
                .collect()
        }
        let nodes = tree(&st.nodes, pid, &Value::Null);
        data.insert(
            "project".into(),
            json!({"id": pid, "slug": slug, "nodes": nodes}),
        );
    }
    (200, json!({"data": data}))
}
