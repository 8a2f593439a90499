//! Where the server token comes from. Ours first: explicit in code, then
//! `ML_DASH_TOKEN`. Then the stores the `ml-dash login` CLI writes, in the
//! order of the Python SDK's `load_token` (0.11): the OS keyring, then
//! `tokens.encrypted`, then `tokens.json`, both files in `$ML_DASH_CONFIG_DIR`
//! (default `~/.dash`), the token under the key `ml-dash-token`. The CLI keeps
//! the token in the keyring when Python's `keyring` package is installed, else
//! in `tokens.encrypted` (`tokens.json` only without `cryptography`).
//!
//! - The keyring (service `ml-dash`, user `ml-dash-token`) is read only with
//!   the cargo feature `keyring`: the Secret Service over the D-Bus session
//!   bus (GNOME Keyring, KWallet, KeePassXC), in pure Rust but heavy to build
//!   (zbus), hence off by default. Without a session bus or a Secret Service
//!   it is skipped, as Python's `keyring` skips it. An item in a locked
//!   collection is not unlocked (that can wait on a desktop prompt): a warning
//!   says to unlock it. The macOS Keychain is not read.
//! - `tokens.encrypted` is a Fernet token (<https://github.com/fernet/spec>:
//!   AES-128-CBC and HMAC-SHA256) whose key is `encryption.key` beside it;
//!   decrypted, it is the JSON object `tokens.json` holds.
//!
//! A store that cannot be read (a locked or failing keyring, a
//! `tokens.encrypted` without its key or that does not decrypt, a file that
//! is not a JSON object) is a warning naming the store and the kind of error,
//! never its contents, and the lookup goes on to the next store (the SDK
//! raises instead). So is a token file or key readable by group or others.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;

/// `ML_DASH_TOKEN`: the server token (ours; the Python SDK has no variable).
pub const ENV_TOKEN: &str = "ML_DASH_TOKEN";
/// `ML_DASH_CONFIG_DIR`: the folder of the token files (default `~/.dash`).
pub const ENV_CONFIG_DIR: &str = "ML_DASH_CONFIG_DIR";
/// The key of the token in the token files, and its user name in the keyring.
pub const TOKEN_KEY: &str = "ml-dash-token";
/// The service name of the token in the OS keyring.
pub const KEYRING_SERVICE: &str = "ml-dash";

/// Where a token was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// Given in code.
    Explicit,
    /// From `ML_DASH_TOKEN`.
    Env,
    /// From the OS keyring (cargo feature `keyring`).
    Keyring,
    /// From this `tokens.encrypted` or `tokens.json`.
    File(PathBuf),
}

/// A token lookup: the token (if any), where it came from, and warnings to show.
#[derive(Debug, Clone, Default)]
pub struct TokenLookup {
    /// The token and its source.
    pub token: Option<(String, TokenSource)>,
    /// Problems found on the way (a store that cannot be read, a token file
    /// readable by others).
    pub warnings: Vec<String>,
}

/// The token files' folder: `$ML_DASH_CONFIG_DIR`, else `~/.dash`.
pub fn config_dir() -> Option<PathBuf> {
    match std::env::var_os(ENV_CONFIG_DIR) {
        Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| Path::new(&h).join(".dash")),
    }
}

/// Finds the token: explicit, `ML_DASH_TOKEN`, the keyring (feature
/// `keyring`), then [`read_token_files`] of [`config_dir`].
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
    #[cfg(feature = "keyring")]
    match keyring_token() {
        Ok(Some(t)) => {
            out.token = Some((t, TokenSource::Keyring));
            return out;
        }
        Ok(None) => {}
        Err(w) => out.warnings.push(w),
    }
    if let Some(dir) = config_dir() {
        let files = read_token_files(&dir);
        out.token = files.token;
        out.warnings.extend(files.warnings);
    }
    out
}

/// The token in `dir`'s `tokens.encrypted`, else in its `tokens.json`.
pub fn read_token_files(dir: &Path) -> TokenLookup {
    let mut out = TokenLookup::default();
    for (name, encrypted) in [("tokens.encrypted", true), ("tokens.json", false)] {
        let file = dir.join(name);
        match read_token_file(&file, encrypted) {
            Ok(Some((t, w))) => {
                out.warnings.extend(w);
                out.token = Some((t, TokenSource::File(file)));
                break;
            }
            Ok(None) => {}
            Err(w) => out.warnings.push(w),
        }
    }
    out
}

/// How the 401/403 warning names the token the server refused: its source,
/// or where the lookup looked; in a build without the keyring, that the CLI
/// may have stored the token there.
pub(crate) fn describe(from: Option<&TokenSource>) -> String {
    #[cfg(feature = "keyring")]
    const NEWER: &str = "";
    #[cfg(not(feature = "keyring"))]
    const NEWER: &str = " (if the ml-dash CLI stored a newer token in the OS keyring, this \
        build does not read it: set ML_DASH_TOKEN, or build ml-dash with the cargo feature `keyring`)";
    #[cfg(feature = "keyring")]
    const LOOKED: &str = "the OS keyring, ";
    #[cfg(not(feature = "keyring"))]
    const LOOKED: &str = "";
    #[cfg(feature = "keyring")]
    const NONE: &str = "";
    #[cfg(not(feature = "keyring"))]
    const NONE: &str = "; the ml-dash CLI may have stored your token in the OS keyring, which \
        this build does not read: set ML_DASH_TOKEN, or build ml-dash with the cargo feature `keyring`";
    match from {
        Some(TokenSource::Explicit) => "the token given in code".to_owned(),
        Some(TokenSource::Env) => format!("the token in {ENV_TOKEN}"),
        Some(TokenSource::Keyring) => {
            format!("the token in the OS keyring (service `{KEYRING_SERVICE}`)")
        }
        Some(TokenSource::File(p)) => format!("the token in {}{NEWER}", p.display()),
        None => {
            let dir = config_dir().map_or("~/.dash".into(), |d| d.display().to_string());
            format!(
                "a request without a token (none in code, {ENV_TOKEN}, {LOOKED}\
                 {dir}/tokens.encrypted or tokens.json{NONE})"
            )
        }
    }
}

/// The token in one file: `Ok(None)` when the file or its token is absent,
/// `Err` (a warning) when it cannot be read; with warnings for loose modes.
fn read_token_file(file: &Path, encrypted: bool) -> Result<Option<(String, Vec<String>)>, String> {
    let cannot = |why: String| {
        format!(
            "cannot read the token file {}: {why}; run `ml-dash login` again, or set {ENV_TOKEN}",
            file.display()
        )
    };
    let data = match std::fs::read(file) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(cannot(e.to_string())),
    };
    let mut secrets = vec![file.to_owned()];
    let text = if encrypted {
        let key_file = file.with_file_name("encryption.key");
        let key = match std::fs::read(&key_file) {
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(cannot(format!("its key {} is missing", key_file.display())));
            }
            Err(e) => return Err(cannot(format!("its key {}: {e}", key_file.display()))),
        };
        let text = fernet_decrypt(&key, &data).map_err(|why| {
            cannot(format!(
                "it does not decrypt with {} ({why})",
                key_file.display()
            ))
        })?;
        secrets.push(key_file);
        text
    } else {
        data
    };
    // serde_json's messages name a position, never the text.
    let v: Json = serde_json::from_slice(&text).map_err(|e| cannot(format!("not JSON ({e})")))?;
    let Some(tokens) = v.as_object() else {
        return Err(cannot("not a JSON object".into()));
    };
    let token = match tokens.get(TOKEN_KEY) {
        None => return Ok(None),
        Some(Json::String(t)) if t.is_empty() => return Ok(None),
        Some(Json::String(t)) => t.clone(),
        Some(_) => return Err(cannot(format!("its `{TOKEN_KEY}` is not a string"))),
    };
    Ok(Some((
        token,
        secrets.iter().filter_map(|f| loose(f)).collect(),
    )))
}

/// A warning when `file` is readable by group or others.
fn loose(file: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(file).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "the token file {} is readable by group or others (mode {mode:03o}): run `chmod 600 {}`",
            file.display(),
            file.display()
        )
    })
}

/// Decrypts a Fernet token (<https://github.com/fernet/spec>, version 0x80):
/// the url-safe base64 of `0x80 ‖ timestamp (8) ‖ IV (16) ‖ ciphertext ‖ HMAC
/// (32)`, the ciphertext AES-128-CBC with PKCS#7 padding, the HMAC-SHA256
/// over all before it; the key is the url-safe base64 of `signing key (16) ‖
/// encryption key (16)`. The timestamp is not checked, as by Python's
/// `Fernet.decrypt` without a `ttl`. Errors say what failed, never content.
fn fernet_decrypt(key: &[u8], token: &[u8]) -> Result<Vec<u8>, &'static str> {
    use aes::cipher::{BlockDecryptMut, KeyIvInit, block_padding::Pkcs7};
    use base64::{Engine, engine::general_purpose::URL_SAFE};
    use hmac::{Hmac, Mac};
    const HEAD: usize = 1 + 8 + 16;
    const TAG: usize = 32;

    let key = URL_SAFE
        .decode(key.trim_ascii())
        .ok()
        .filter(|k| k.len() == 32)
        .ok_or("the key is not 32 bytes of url-safe base64")?;
    let (signing, encryption) = key.split_at(16);
    let data = URL_SAFE
        .decode(token.trim_ascii())
        .map_err(|_| "the file is not url-safe base64")?;
    if data.len() < HEAD + 16 + TAG || data[0] != 0x80 {
        return Err("the file is not a Fernet token");
    }
    let (signed, tag) = data.split_at(data.len() - TAG);
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(signing).map_err(|_| "bad signing key")?;
    mac.update(signed);
    mac.verify_slice(tag)
        .map_err(|_| "wrong key, or the file is damaged: its HMAC does not match")?;
    let mut text = signed[HEAD..].to_vec();
    let len = cbc::Decryptor::<aes::Aes128>::new_from_slices(encryption, &signed[9..HEAD])
        .map_err(|_| "bad encryption key")?
        .decrypt_padded_mut::<Pkcs7>(&mut text)
        .map_err(|_| "bad padding after decryption")?
        .len();
    text.truncate(len);
    Ok(text)
}

/// The token in the OS keyring (Secret Service): service `ml-dash`, user
/// `ml-dash-token`, as Python's `keyring` stores it. `Ok(None)` without a
/// session bus or a Secret Service on it.
#[cfg(feature = "keyring")]
fn keyring_token() -> Result<Option<String>, String> {
    use secret_service::EncryptionType;
    use secret_service::blocking::SecretService;
    use std::collections::HashMap;

    let Ok(ss) = SecretService::connect(EncryptionType::Dh)
        .or_else(|_| SecretService::connect(EncryptionType::Plain))
    else {
        return Ok(None);
    };
    let fail = |e: secret_service::Error| {
        format!("cannot read the OS keyring (Secret Service): {e}; set {ENV_TOKEN}")
    };
    let attributes = HashMap::from([("service", KEYRING_SERVICE), ("username", TOKEN_KEY)]);
    let found = ss.search_items(attributes).map_err(fail)?;
    let Some(item) = found.unlocked.first() else {
        if found.locked.is_empty() {
            return Ok(None);
        }
        return Err(format!(
            "the OS keyring holds an ml-dash token in a locked collection: unlock it \
             (sign in to the desktop session), or set {ENV_TOKEN}"
        ));
    };
    let secret = item.get_secret().map_err(fail)?;
    let token = String::from_utf8(secret).map_err(|_| {
        format!("the ml-dash token in the OS keyring is not UTF-8; run `ml-dash login` again, or set {ENV_TOKEN}")
    })?;
    Ok(Some(token).filter(|t| !t.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The key and token of the Fernet spec's `verify.json` (message `hello`).
    const SPEC_KEY: &str = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=";
    const SPEC_TOKEN: &str = "gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0ODy021cpGVWKZ_eEwCGM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA==";
    /// A key and a `tokens.encrypted` made by Python's `cryptography`:
    /// `Fernet(key).encrypt(json.dumps({"ml-dash-token": "tok-from-python"}).encode())`.
    const PY_KEY: &str = "UpkhK5eaxepy0xaK1f1eqc3Ec0BnF3olnmjETzayDRU=";
    const PY_TOKEN: &str = "gAAAAABrETfmvu2zKqTVKkkvoK4rPB7KeeMGGPLl7LhOnPRl5Gur4XJ09CQ-E5pgbeJWJMf4riRBk099n5YMCIXfKRHTgFgf7TPVUUI0iKCxWibIJrLtGKAm2JUp8dwWtygeY65Wb4pU";

    fn write(file: &Path, text: &str) {
        std::fs::write(file, text).unwrap();
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    #[test]
    fn fernet_decrypts_the_spec_vector_and_refuses_the_invalid_ones() {
        let hello = fernet_decrypt(SPEC_KEY.as_bytes(), SPEC_TOKEN.as_bytes());
        assert_eq!(hello.unwrap(), b"hello");
        // Whitespace around either, as in a file with a newline, is ignored.
        let hello = fernet_decrypt(
            format!("{SPEC_KEY}\n").as_bytes(),
            format!(" {SPEC_TOKEN}\n").as_bytes(),
        );
        assert_eq!(hello.unwrap(), b"hello");
        // The spec's invalid.json (same key), less the TTL cases: `decrypt`
        // without a TTL checks no time.
        for (what, token) in [
            (
                "incorrect mac",
                "gAAAAAAdwJ6xAAECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPAl1-szkFVzXTuGb4hR8AKtwcaX1YdykQUFBQUFBQUFBQQ==",
            ),
            (
                "too short",
                "gAAAAAAdwJ6xAAECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPA==",
            ),
            (
                "invalid base64",
                "%%%%%%%%%%%%%AECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPAl1-szkFVzXTuGb4hR8AKtwcaX1YdykRtfsH-p1YsUD2Q==",
            ),
            (
                "payload size not multiple of block size",
                "gAAAAAAdwJ6xAAECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPOm73QeoCk9uGib28Xe5vz6oxq5nmxbx_v7mrfyudzUm",
            ),
            (
                "payload padding error",
                "gAAAAAAdwJ6xAAECAwQFBgcICQoLDA0ODz4LEpdELGQAad7aNEHbf-JkLPIpuiYRLQ3RtXatOYREu2FWke6CnJNYIbkuKNqOhw==",
            ),
            (
                "incorrect IV (causes padding error)",
                "gAAAAAAdwJ6xBQECAwQFBgcICQoLDA0OD3HkMATM5lFqGaerZ-fWPAkLhFLHpGtDBRLRTZeUfWgHSv49TF2AUEZ1TIvcZjK1zQ==",
            ),
            (
                "invalid characters in b64",
                "*gAAAAAAdwJ6wAAECAwQFBgcI!CQoLDA0ODy021?cpGVWKZ_eEwC@GM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA==",
            ),
            (
                "invalid non-urlsafe characters in b64",
                "gAAAAAAdwJ6wAAEC/AwQFBgcICQoLDA0ODy+021cpGVWKZ_eEwCGM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA==",
            ),
        ] {
            assert!(
                fernet_decrypt(SPEC_KEY.as_bytes(), token.as_bytes()).is_err(),
                "{what}"
            );
        }
        let e = fernet_decrypt(PY_KEY.as_bytes(), SPEC_TOKEN.as_bytes()).unwrap_err();
        assert!(e.contains("wrong key"), "{e}");
        let e = fernet_decrypt(b"c2hvcnQ=", SPEC_TOKEN.as_bytes()).unwrap_err();
        assert!(e.contains("32 bytes"), "{e}");
    }

    #[test]
    fn a_python_tokens_encrypted_is_read_before_tokens_json() {
        let t = tempfile::tempdir().unwrap();
        let (enc, key) = (
            t.path().join("tokens.encrypted"),
            t.path().join("encryption.key"),
        );
        write(&enc, PY_TOKEN);
        write(&key, &format!("{PY_KEY}\n"));
        write(
            &t.path().join("tokens.json"),
            r#"{"ml-dash-token": "plain"}"#,
        );
        let l = read_token_files(t.path());
        assert_eq!(
            l.token,
            Some(("tok-from-python".into(), TokenSource::File(enc.clone())))
        );
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);

        // A key readable by others is flagged.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let l = read_token_files(t.path());
        assert_eq!(l.token.unwrap().0, "tok-from-python");
        assert_eq!(l.warnings.len(), 1);
        assert!(l.warnings[0].contains(&format!("chmod 600 {}", key.display())));

        // Without its key, or with another key: a warning naming both files,
        // never the content, and tokens.json is read.
        for (key_text, why) in [(None, "is missing"), (Some(SPEC_KEY), "does not decrypt")] {
            match key_text {
                None => std::fs::remove_file(&key).unwrap(),
                Some(k) => write(&key, k),
            }
            let l = read_token_files(t.path());
            assert_eq!(l.token.unwrap().0, "plain");
            let [w] = &l.warnings[..] else {
                panic!("{:?}", l.warnings)
            };
            assert!(w.contains(&enc.display().to_string()), "{w}");
            assert!(
                w.contains(&key.display().to_string()) && w.contains(why),
                "{w}"
            );
            assert!(w.contains("ml-dash login") && w.contains(ENV_TOKEN), "{w}");
            assert!(
                !w.contains("tok-from-python") && !w.contains(PY_TOKEN),
                "{w}"
            );
        }
    }

    #[test]
    fn token_file_is_read_and_loose_modes_are_flagged() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("tokens.json");
        std::fs::write(&f, r#"{"ml-dash-token": "abc"}"#).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (tok, w) = read_token_file(&f, false).unwrap().unwrap();
        assert_eq!(tok, "abc");
        assert!(w[0].contains("chmod 600"));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read_token_file(&f, false).unwrap().unwrap().1.is_empty());
        std::fs::write(&f, "{not json").unwrap();
        assert!(
            read_token_file(&f, false)
                .unwrap_err()
                .contains("ml-dash login")
        );
        std::fs::write(&f, r#"{"ml-dash-token": 7}"#).unwrap();
        assert!(
            read_token_file(&f, false)
                .unwrap_err()
                .contains("not a string")
        );
        std::fs::write(&f, r#"{"other": "x"}"#).unwrap();
        assert!(read_token_file(&f, false).unwrap().is_none());
        assert!(
            read_token_file(&t.path().join("missing"), false)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn explicit_token_wins() {
        let l = resolve_token(Some(" tok "));
        assert_eq!(l.token, Some(("tok".into(), TokenSource::Explicit)));
    }

    /// The token Python's `keyring` stored in a real Secret Service; needs one
    /// on the session bus, hence `#[ignore]`d and not run in CI. On Debian:
    /// `apt-get install gnome-keyring dbus-daemon`, a venv with `pip install
    /// keyring`, then `dbus-run-session -- sh -c 'echo pw |
    /// gnome-keyring-daemon --unlock --components=secrets; python -c "import
    /// keyring; keyring.set_password(\"ml-dash\", \"ml-dash-token\", \"tok-k\")";
    /// ML_DASH_KEYRING_TEST_TOKEN=tok-k cargo test --features keyring --lib
    /// keyring -- --ignored'`.
    #[cfg(feature = "keyring")]
    #[test]
    #[ignore]
    fn reads_the_token_python_keyring_stored() {
        let want = std::env::var("ML_DASH_KEYRING_TEST_TOKEN")
            .expect("set ML_DASH_KEYRING_TEST_TOKEN to the token stored in the keyring");
        assert_eq!(keyring_token(), Ok(Some(want)));
    }

    #[test]
    fn the_refusal_warning_says_whether_the_keyring_was_read() {
        let none = describe(None);
        let file = describe(Some(&TokenSource::File("/x/tokens.json".into())));
        assert!(none.contains("tokens.encrypted or tokens.json"), "{none}");
        assert!(file.contains("/x/tokens.json"), "{file}");
        let hint = "build ml-dash with the cargo feature `keyring`";
        if cfg!(feature = "keyring") {
            assert!(none.contains("the OS keyring, "), "{none}");
            assert!(!none.contains(hint) && !file.contains(hint));
        } else {
            assert!(
                none.contains("OS keyring, which this build does not read"),
                "{none}"
            );
            assert!(none.contains(hint) && file.contains(hint) && file.contains(ENV_TOKEN));
        }
        assert!(!describe(Some(&TokenSource::Env)).contains("keyring"));
    }
}
