//! `multipart/form-data` bodies (file uploads), split into their parts.

/// One part of a `multipart/form-data` body.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

/// Splits a `multipart/form-data` body (`content_type` carries the boundary).
pub fn multipart(content_type: &str, body: &[u8]) -> Vec<Part> {
    let Some(b) = content_type.split("boundary=").nth(1) else {
        return Vec::new();
    };
    let delim = format!("--{}", b.trim_matches('"'));
    let d = delim.as_bytes();
    let find = |hay: &[u8], from: usize| -> Option<usize> {
        (from..=hay.len().checked_sub(d.len())?).find(|&i| &hay[i..i + d.len()] == d)
    };
    let mut parts = Vec::new();
    let Some(mut at) = find(body, 0) else {
        return parts;
    };
    loop {
        let start = at + d.len();
        if body[start..].starts_with(b"--") {
            break;
        }
        let Some(next) = find(body, start) else { break };
        // "\r\n" headers "\r\n\r\n" data "\r\n"
        let chunk = &body[start + 2..next - 2];
        let Some(sep) =
            (0..chunk.len().saturating_sub(3)).find(|&i| &chunk[i..i + 4] == b"\r\n\r\n")
        else {
            break;
        };
        let head = String::from_utf8_lossy(&chunk[..sep]).into_owned();
        let data = chunk[sep + 4..].to_vec();
        let attr = |key: &str| {
            let k = format!("{key}=\"");
            head.find(&k).map(|i| {
                let rest = &head[i + k.len()..];
                rest[..rest.find('"').unwrap_or(rest.len())].to_owned()
            })
        };
        let content_type = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("Content-Type:")
                    .or_else(|| l.strip_prefix("content-type:"))
            })
            .map(|v| v.trim().to_owned());
        parts.push(Part {
            name: attr(" name").or_else(|| attr("name")).unwrap_or_default(),
            filename: attr("filename"),
            content_type,
            data,
        });
        at = next;
    }
    parts
}
