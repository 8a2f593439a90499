//! Where the server token comes from: explicit in code, then
//! `ML_DASH_TOKEN`, then `$ML_DASH_CONFIG_DIR/tokens.json` (default
//! `~/.dash/tokens.json`, key `ml-dash-token`, the plaintext store of the
//! `ml-dash login` CLI). The OS keyring and the encrypted file the Python SDK
//! also reads are not consulted: put the token in the variable or the file.

use std::path::{Path, PathBuf};

/// `ML_DASH_TOKEN`: the server token (ours; the Python SDK has no variable).
pub const ENV_TOKEN: &str = "ML_DASH_TOKEN";
/// `ML_DASH_CONFIG_DIR`: the folder of `tokens.json` (default `~/.dash`).
pub const ENV_CONFIG_DIR: &str = "ML_DASH_CONFIG_DIR";
/// The key of the token in `tokens.json`.
pub const TOKEN_KEY: &str = "ml-dash-token";

/// Where a token was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// Given in code.
    Explicit,
    /// From `ML_DASH_TOKEN`.
    Env,
    /// From this `tokens.json`.
    File(PathBuf),
}

/// A token lookup: the token (if any), where it came from, and warnings to show.
#[derive(Debug, Clone, Default)]
pub struct TokenLookup {
    /// The token and its source.
    pub token: Option<(String, TokenSource)>,
    /// Problems found on the way (a token file readable by others, a file that does not parse).
    pub warnings: Vec<String>,
}

/// The token file's folder: `$ML_DASH_CONFIG_DIR`, else `~/.dash`.
pub fn config_dir() -> Option<PathBuf> {
    match std::env::var_os(ENV_CONFIG_DIR) {
        Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| Path::new(&h).join(".dash")),
    }
}

/// Finds the token (explicit, then `ML_DASH_TOKEN`, then `tokens.json`).
pub fn resolve_token(explicit: Option<&str>) -> TokenLookup {
    let mut out = TokenLookup::default();
    if let Some(t) = explicit.map(str::trim).filter(|t| !t.is_empty()) {
        out.token = Some((t.to_owned(), TokenSource::Explicit));
        return out;
    }
    if let Ok(t) = std::env::var(ENV_TOKEN)
        && !t.trim().is_empty()
    {
        out.token = Some((t.trim().to_owned(), TokenSource::Env));
        return out;
    }
    if let Some(dir) = config_dir() {
        let file = dir.join("tokens.json");
        match read_token_file(&file) {
            Ok(Some((t, w))) => {
                out.warnings.extend(w);
                out.token = Some((t, TokenSource::File(file)));
            }
            Ok(None) => {}
            Err(w) => out.warnings.push(w),
        }
    }
    out
}

fn read_token_file(file: &Path) -> Result<Option<(String, Option<String>)>, String> {
    use std::os::unix::fs::PermissionsExt;
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "cannot read the token file {}: {e}",
                file.display()
            ));
        }
    };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "the token file {} is not JSON ({e}); run `ml-dash login` again",
            file.display()
        )
    })?;
    let Some(t) = v
        .get(TOKEN_KEY)
        .and_then(|t| t.as_str())
        .filter(|t| !t.is_empty())
    else {
        return Ok(None);
    };
    let mode = std::fs::metadata(file)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o600);
    let warning = (mode & 0o077 != 0).then(|| {
        format!(
            "the token file {} is readable by group or others (mode {mode:03o}): run `chmod 600 {}`",
            file.display(),
            file.display()
        )
    });
    Ok(Some((t.to_owned(), warning)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn token_file_is_read_and_loose_modes_are_flagged() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("tokens.json");
        std::fs::write(&f, r#"{"ml-dash-token": "abc"}"#).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (tok, w) = read_token_file(&f).unwrap().unwrap();
        assert_eq!(tok, "abc");
        assert!(w.unwrap().contains("chmod 600"));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read_token_file(&f).unwrap().unwrap().1.is_none());
        std::fs::write(&f, "{not json").unwrap();
        assert!(read_token_file(&f).unwrap_err().contains("ml-dash login"));
        assert!(
            read_token_file(&t.path().join("missing"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn explicit_token_wins() {
        let l = resolve_token(Some(" tok "));
        assert_eq!(l.token, Some(("tok".into(), TokenSource::Explicit)));
    }
}
