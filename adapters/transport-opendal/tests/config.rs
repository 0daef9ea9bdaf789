//! URL parsing and configuration: what is accepted, what is refused, and that secrets never
//! show in Debug or Display output. No server needed.

use std::collections::HashMap;

use onefolder_transport_opendal::config::{EnvSource, is_loopback_host, parse_url};
use onefolder_transport_opendal::{Config, ConfigError, OpendalTransport};

const SECRET: &str = "very-secret-value-3141";

fn env(vars: &[(&str, &str)]) -> impl EnvSource + use<> {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |name: &str| map.get(name).cloned()
}

#[test]
fn s3_url_with_prefix_and_environment() {
    let e = env(&[
        ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_REGION", "eu-central-1"),
        ("ONEFOLDER_SYNC_S3_ENDPOINT", "https://minio.example.com:9000/"),
    ]);
    let Config::S3(o) = parse_url("s3://my-bucket/photos/2024/", &e).unwrap() else { panic!("not S3") };
    assert_eq!((o.bucket.as_str(), o.prefix.as_str()), ("my-bucket", "photos/2024"));
    assert_eq!(o.endpoint.as_deref(), Some("https://minio.example.com:9000"));
    assert_eq!(o.region.as_deref(), Some("eu-central-1"));
    let c = o.credentials.as_ref().unwrap();
    assert_eq!((c.access_key_id.as_str(), c.secret_access_key.expose()), ("AKIAEXAMPLE", SECRET));
    assert!(!o.virtual_host_style);
}

#[test]
fn s3_endpoint_precedence_and_defaults() {
    let e = env(&[("AWS_ENDPOINT_URL", "https://a.example"), ("ONEFOLDER_SYNC_S3_ENDPOINT", "https://b.example")]);
    let Config::S3(o) = parse_url("s3://bucket", &e).unwrap() else { panic!() };
    assert_eq!(o.endpoint.as_deref(), Some("https://b.example"), "ONEFOLDER_SYNC_S3_ENDPOINT wins");
    assert_eq!(o.prefix, "");
    assert!(o.credentials.is_none(), "no keys: OpenDAL's default chain");
    let Config::S3(o) = parse_url("s3://bucket", &env(&[("AWS_ENDPOINT_URL", "https://a.example")])).unwrap() else {
        panic!()
    };
    assert_eq!(o.endpoint.as_deref(), Some("https://a.example"));
}

#[test]
fn webdav_urls() {
    let e = env(&[("ONEFOLDER_SYNC_WEBDAV_USER", "alice"), ("ONEFOLDER_SYNC_WEBDAV_PASSWORD", SECRET)]);
    let Config::Webdav(o) = parse_url("webdav://cloud.example.com/remote.php/dav/files/alice/Photos", &e).unwrap()
    else {
        panic!("not WebDAV")
    };
    assert_eq!(o.endpoint, "https://cloud.example.com", "webdav:// is HTTPS");
    assert_eq!(o.path, "/remote.php/dav/files/alice/Photos");
    assert_eq!(o.user.as_deref(), Some("alice"));
    assert_eq!(o.password.as_ref().unwrap().expose(), SECRET);
    let Config::Webdav(o) = parse_url("webdavs://nas.local:5006/", &e).unwrap() else { panic!() };
    assert_eq!((o.endpoint.as_str(), o.path.as_str()), ("https://nas.local:5006", ""));
    let Config::Webdav(o) = parse_url("webdav+http://127.0.0.1:8080/dav", &e).unwrap() else { panic!() };
    assert_eq!(o.endpoint, "http://127.0.0.1:8080", "plain http to loopback");
    let Config::Webdav(o) = parse_url("webdav+http://[::1]:8080/dav", &e).unwrap() else { panic!() };
    assert_eq!(o.endpoint, "http://[::1]:8080");
}

#[test]
fn webdav_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, format!("{SECRET}\nignored second line\n")).unwrap();
    let path = file.to_str().unwrap().to_owned();
    let e = env(&[("ONEFOLDER_SYNC_WEBDAV_PASSWORD_FILE", path.as_str())]);
    let Config::Webdav(o) = parse_url("webdav://host/x", &e).unwrap() else { panic!() };
    assert_eq!(o.password.unwrap().expose(), SECRET);
    let missing = env(&[("ONEFOLDER_SYNC_WEBDAV_PASSWORD_FILE", "/nonexistent/password")]);
    assert!(matches!(parse_url("webdav://host/x", &missing), Err(ConfigError::PasswordFile { .. })));
}

#[test]
fn plain_http_only_to_loopback() {
    let none = env(&[]);
    for url in ["webdav+http://cloud.example.com/dav", "webdav+http://192.168.1.10/dav", "webdav+http://10.0.0.1:80/"] {
        assert!(matches!(parse_url(url, &none), Err(ConfigError::PlainHttp { .. })), "{url} accepted");
    }
    let remote_s3 = env(&[("ONEFOLDER_SYNC_S3_ENDPOINT", "http://minio.example.com:9000")]);
    assert!(matches!(parse_url("s3://bucket", &remote_s3), Err(ConfigError::PlainHttp { .. })));
    let local_s3 = env(&[("ONEFOLDER_SYNC_S3_ENDPOINT", "http://localhost:9000")]);
    assert!(parse_url("s3://bucket", &local_s3).is_ok());
    let allowed = env(&[("ONEFOLDER_SYNC_ALLOW_PLAIN_HTTP", "1")]);
    assert!(parse_url("webdav+http://cloud.example.com/dav", &allowed).is_ok(), "an explicit opt-in");
    let bad_flag = env(&[("ONEFOLDER_SYNC_ALLOW_PLAIN_HTTP", "maybe")]);
    assert!(matches!(parse_url("s3://bucket", &bad_flag), Err(ConfigError::InvalidEnv { .. })));
    for host in ["localhost", "127.0.0.1", "127.8.9.10", "::1", "[::1]"] {
        assert!(is_loopback_host(host), "{host}");
    }
    for host in ["example.com", "10.0.0.1", "localhost.example.com", "::2"] {
        assert!(!is_loopback_host(host), "{host}");
    }
}

#[test]
fn rejected_urls() {
    let none = env(&[]);
    for url in [
        "",
        "bucket/prefix",
        "ftp://host/x",
        "file:///tmp/x",
        "s3://",
        "s3://ab",
        "s3://Upper-Case",
        "s3://under_score",
        "s3://-leading",
        "s3://bucket/../escape",
        "s3://bucket/a/./b",
        "s3://bucket/x?versionId=1",
        "webdav://host/x#frag",
        "webdav:///no-host",
        "webdav://host/a\\b",
    ] {
        assert!(matches!(parse_url(url, &none), Err(ConfigError::InvalidUrl { .. })), "{url:?} accepted");
    }
    let refused = parse_url(&format!("webdav://alice:{SECRET}@host/x"), &none).unwrap_err();
    assert!(matches!(refused, ConfigError::InvalidUrl { .. }));
    assert!(!refused.to_string().contains(SECRET), "the error repeats the password: {refused}");
    assert!(!format!("{refused:?}").contains(SECRET));
    let only_key = env(&[("AWS_ACCESS_KEY_ID", "AKIA")]);
    assert!(matches!(parse_url("s3://bucket", &only_key), Err(ConfigError::InvalidEnv { .. })));
}

#[test]
fn secrets_never_in_debug_or_display() {
    let e = env(&[
        ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
        ("AWS_SESSION_TOKEN", SECRET),
        ("ONEFOLDER_SYNC_WEBDAV_USER", "alice"),
        ("ONEFOLDER_SYNC_WEBDAV_PASSWORD", SECRET),
        ("ONEFOLDER_SYNC_S3_ENDPOINT", "http://127.0.0.1:9"),
    ]);
    for url in ["s3://bucket/prefix", "webdav://cloud.example.com/remote.php/dav/files/alice"] {
        let config = parse_url(url, &e).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        let transport = OpendalTransport::new(config).unwrap();
        for shown in [format!("{transport:?}"), format!("{transport}"), format!("{transport:#?}")] {
            assert!(!shown.contains(SECRET), "{shown}");
        }
    }
}
