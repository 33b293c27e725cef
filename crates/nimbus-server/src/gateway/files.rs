//! Static files of Lift's `static-website` and `single-page-app` constructs, served where
//! no route matches: a site at `/{id}/...`, and the first site also at `/...`.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::response::Response;
use http::{Method, StatusCode, header};
use nimbus_core::policy::StaticSite;
use percent_encoding::percent_decode_str;

/// The app's static sites, their folders resolved once.
pub(crate) struct StaticSites {
    sites: Vec<Site>,
}

struct Site {
    id: String,
    /// The folder, canonical, so a file's canonical path must start with it.
    root: PathBuf,
    single_page: bool,
}

impl StaticSites {
    /// The sites whose folders exist; the binary reports missing ones before the server
    /// starts.
    pub(crate) fn new(sites: &[StaticSite]) -> StaticSites {
        StaticSites {
            sites: sites
                .iter()
                .filter_map(|site| {
                    Some(Site {
                        id: site.id.clone(),
                        root: Path::new(&site.dir).canonicalize().ok()?,
                        single_page: site.single_page,
                    })
                })
                .collect(),
        }
    }

    /// The file `path` names, for a GET or HEAD; `None` when no site has it.
    pub(crate) async fn serve(&self, method: &Method, path: &str) -> Option<Response> {
        if self.sites.is_empty() || (method != Method::GET && method != Method::HEAD) {
            return None;
        }
        let (site, rest) = self
            .sites
            .iter()
            .find_map(|site| {
                let rest = path.strip_prefix('/')?.strip_prefix(site.id.as_str())?;
                (rest.is_empty() || rest.starts_with('/')).then_some((site, rest))
            })
            .or_else(|| Some((self.sites.first()?, path)))?;
        let file = match relative_path(rest) {
            Some(relative) => site.find(&relative).await,
            // A path that tries to leave the folder names no file.
            None => return None,
        };
        let file = match file {
            Some(file) => file,
            // A single-page app routes in the browser: every other path gets its page.
            None if site.single_page => site.find(Path::new("index.html")).await?,
            None => return None,
        };
        let bytes = tokio::fs::read(&file).await.ok()?;
        let len = bytes.len();
        let mut res = Response::new(if method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(bytes)
        });
        *res.status_mut() = StatusCode::OK;
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(content_type(&file)),
        );
        headers.insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
        Some(res)
    }
}

impl Site {
    /// The canonical path of the file at `relative` (a folder's `index.html`), if it is a
    /// file inside the site's folder; links that lead out of it name nothing.
    async fn find(&self, relative: &Path) -> Option<PathBuf> {
        let mut candidate = self.root.join(relative);
        if tokio::fs::metadata(&candidate).await.ok()?.is_dir() {
            candidate.push("index.html");
        }
        let real = tokio::fs::canonicalize(&candidate).await.ok()?;
        let is_file = tokio::fs::metadata(&real).await.ok()?.is_file();
        (is_file && real.starts_with(&self.root)).then_some(real)
    }
}

/// The percent-decoded path below a site's folder; `None` when a segment is `..`, `.` or
/// holds a backslash or NUL, which a browser never sends for a file of the site.
fn relative_path(path: &str) -> Option<PathBuf> {
    let mut relative = PathBuf::new();
    for segment in path.split('/').filter(|segment| !segment.is_empty()) {
        let segment = percent_decode_str(segment).decode_utf8().ok()?;
        if segment == ".." || segment == "." || segment.contains(['\\', '\0', '/']) {
            return None;
        }
        relative.push(segment.as_ref());
    }
    Some(relative)
}

/// The media type of the file types websites are made of; anything else is bytes.
fn content_type(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        Some("xml") => "application/xml",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("woff") => "font/woff",
        Some("woff2") => "font/woff2",
        Some("wasm") => "application/wasm",
        Some("pdf") => "application/pdf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::relative_path;

    #[test]
    fn paths_that_leave_the_folder_name_no_file() {
        for path in [
            "/../etc/passwd",
            "/a/%2e%2e/b",
            "/a/..%2F..%2Fetc",
            "/a\\b",
            "/./a",
        ] {
            assert_eq!(relative_path(path), None, "{path}");
        }
        assert_eq!(
            relative_path("/css/site%20main.css").as_deref(),
            Some(std::path::Path::new("css/site main.css"))
        );
    }
}
