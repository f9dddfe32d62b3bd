//! Routing by method and path pattern, with 404 for unknown paths and 405 (with `Allow`) for known
//! paths asked with the wrong method.
//!
//! A route is a method and a pattern such as `/v1/services/{}/{}`; `{}` matches one decoded segment.
//! The router returns a plain value (usually an enum naming the route) plus the captured segments, so
//! each role matches its routes in one `match` and the table reads as the API.

use super::Response;

/// A routing table mapping `(method, pattern)` to a value of type `R`.
///
/// ```
/// use mini::http::router::{Router, Miss};
/// let router = Router::new(&[("GET", "/Add/{}/{}", 1), ("GET", "/aliveCheck", 2)]);
/// let segs = ["Add".to_string(), "5".to_string(), "6".to_string()];
/// let (route, params) = router.find("GET", &segs).unwrap();
/// assert_eq!((route, params), (1, vec!["5", "6"]));
/// assert!(matches!(router.find("POST", &segs), Err(Miss::Method(_))));
/// ```
pub struct Router<R> {
    routes: Vec<(&'static str, Vec<Part>, R)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Literal(&'static str),
    Param,
}

/// Why no route matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// No pattern matches the path: 404.
    Path,
    /// Patterns match but not with this method: 405, with the methods that would.
    Method(Vec<&'static str>),
}

impl Miss {
    /// The error response for this miss, with `Allow` on a 405.
    pub fn response(&self, method: &str, path: &str) -> Response {
        match self {
            Miss::Path => Response::error(404, format_args!("no route for {}", printable(path))),
            Miss::Method(allow) => Response::error(
                405,
                format_args!("method {} not allowed here", printable(method)),
            )
            .with_header("Allow", allow.join(", ")),
        }
    }
}

/// Keeps input echoed in an error reply short and on one line: at most 200 characters, no controls.
pub fn printable(s: &str) -> String {
    s.chars().take(200).filter(|c| !c.is_control()).collect()
}

impl<R: Copy> Router<R> {
    /// Builds the table; patterns are split on `/`, `{}` marks a parameter.
    pub fn new(table: &[(&'static str, &'static str, R)]) -> Router<R> {
        let routes = table
            .iter()
            .map(|&(method, pattern, value)| (method, parts(pattern), value))
            .collect();
        Router { routes }
    }

    /// Finds the route for a method and decoded path segments, with the captured parameters.
    pub fn find<'a>(
        &self,
        method: &str,
        segments: &'a [String],
    ) -> Result<(R, Vec<&'a str>), Miss> {
        let mut allow = Vec::new();
        for (m, parts, value) in &self.routes {
            let Some(params) = capture(parts, segments) else {
                continue;
            };
            if *m == method {
                return Ok((*value, params));
            }
            if !allow.contains(m) {
                allow.push(*m);
            }
        }
        if allow.is_empty() {
            Err(Miss::Path)
        } else {
            Err(Miss::Method(allow))
        }
    }
}

fn parts(pattern: &'static str) -> Vec<Part> {
    let rest = pattern.strip_prefix('/').unwrap_or(pattern);
    if rest.is_empty() {
        return Vec::new();
    }
    rest.split('/')
        .map(|p| {
            if p == "{}" {
                Part::Param
            } else {
                Part::Literal(p)
            }
        })
        .collect()
}

fn capture<'a>(parts: &[Part], segments: &'a [String]) -> Option<Vec<&'a str>> {
    if parts.len() != segments.len() {
        return None;
    }
    let mut params = Vec::new();
    for (part, seg) in parts.iter().zip(segments) {
        match part {
            Part::Literal(lit) if *lit == seg => {}
            Part::Literal(_) => return None,
            Part::Param => params.push(seg.as_str()),
        }
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(path: &str) -> Vec<String> {
        crate::http::url::path_segments(path).unwrap()
    }

    fn router() -> Router<u8> {
        Router::new(&[
            ("GET", "/", 0),
            ("GET", "/v1/services/{}", 1),
            ("PUT", "/v1/services/{}/{}", 2),
            ("DELETE", "/v1/services/{}/{}", 3),
        ])
    }

    #[test]
    fn matches_literals_and_params() {
        let r = router();
        assert_eq!(r.find("GET", &segs("/")).unwrap().0, 0);
        let s = segs("/v1/services/add/127.0.0.1:1");
        assert_eq!(
            r.find("DELETE", &s).unwrap(),
            (3, vec!["add", "127.0.0.1:1"])
        );
    }

    #[test]
    fn unknown_path_is_404_and_wrong_method_is_405_with_allow() {
        let r = router();
        assert_eq!(r.find("GET", &segs("/nope")), Err(Miss::Path));
        assert_eq!(
            r.find("GET", &segs("/v1/services/add/")),
            Err(Miss::Method(vec!["PUT", "DELETE"]))
        );
        let resp = Miss::Method(vec!["PUT", "DELETE"]).response("GET", "/x");
        assert_eq!(resp.status, 405);
        assert_eq!(resp.headers, vec![("Allow", "PUT, DELETE".to_string())]);
        assert_eq!(
            Miss::Path.response("GET", "/x\r\n").body,
            b"no route for /x\n"
        );
    }
}
