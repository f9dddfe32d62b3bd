//! Routing by method and path pattern, with 404 for unknown paths and 405 (with `Allow`) for known
//! paths asked with the wrong method.
//!
//! A route is a method and a pattern such as `/v1/services/{}/{}`; `{}` matches one decoded segment.
//! The router returns a plain value (usually an enum naming the route) plus the captured segments, so
//! each role matches its routes in one `match` and the table reads as the API. Finding a route
//! allocates nothing: segments are gathered into a small fixed array and the captures move out of it.

use super::Response;

/// Most segments a pattern may have.
pub const MAX_PARTS: usize = 8;
/// Most `{}` parameters a pattern may have.
pub const MAX_PARAMS: usize = 4;

/// A routing table mapping `(method, pattern)` to a value of type `R`.
///
/// ```
/// use mini::http::router::{Router, Miss};
/// let router = Router::new(&[("GET", "/Add/{}/{}", 1), ("GET", "/aliveCheck", 2)]);
/// let (route, params) = router.find("GET", ["Add", "5", "6"]).unwrap();
/// assert_eq!((route, &params[..]), (1, &["5", "6"][..]));
/// assert!(matches!(router.find("POST", ["Add", "5", "6"]), Err(Miss::Method(_))));
/// ```
pub struct Router<R> {
    routes: Vec<(&'static str, Vec<Part>, R)>,
    /// The routes whose pattern has no parameter, as `(method, pattern, value)`, that no earlier
    /// route would also match: [`Router::find_path`] compares the raw path with these first.
    exact: Vec<(&'static str, &'static str, R)>,
}

/// The segments a route captured, in order (at most [`MAX_PARAMS`]); reads as a slice.
#[derive(Debug, Clone)]
pub struct Params<S> {
    items: [S; MAX_PARAMS],
    len: usize,
}

impl<S> std::ops::Deref for Params<S> {
    type Target = [S];

    fn deref(&self) -> &[S] {
        &self.items[..self.len]
    }
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
///
/// ```
/// use mini::http::router::printable;
/// assert_eq!(printable("a\r\nb\u{1b}c"), "abc");
/// assert_eq!(printable(&"x".repeat(500)).len(), 200);
/// ```
pub fn printable(s: &str) -> String {
    s.chars().take(200).filter(|c| !c.is_control()).collect()
}

impl<R: Copy> Router<R> {
    /// Builds the table; patterns are split on `/`, `{}` marks a parameter.
    ///
    /// Panics when a pattern has more than [`MAX_PARTS`] segments or [`MAX_PARAMS`] parameters:
    /// tables are constants, so that is a mistake in the program, found at start.
    pub fn new(table: &[(&'static str, &'static str, R)]) -> Router<R> {
        let routes: Vec<_> = table
            .iter()
            .map(|&(method, pattern, value)| (method, parts(pattern), value))
            .collect();
        for (_, parts, _) in &routes {
            let params = parts.iter().filter(|p| **p == Part::Param).count();
            assert!(
                parts.len() <= MAX_PARTS && params <= MAX_PARAMS,
                "route pattern too long: {parts:?}"
            );
        }
        let exact = table
            .iter()
            .enumerate()
            .filter(|(i, &(method, pattern, _))| {
                let own = &routes[*i].1;
                let literal: Vec<&str> = own
                    .iter()
                    .filter_map(|p| match p {
                        Part::Literal(lit) => Some(*lit),
                        Part::Param => None,
                    })
                    .collect();
                literal.len() == own.len()
                    && !pattern.contains('%')
                    && !routes[..*i]
                        .iter()
                        .any(|(m, parts, _)| *m == method && matches(parts, &literal))
            })
            .map(|(_, &entry)| entry)
            .collect();
        Router { routes, exact }
    }

    /// Finds the route for a method and a raw (not yet decoded) path: a path spelled exactly as a
    /// parameterless pattern is answered by one string comparison per such route, without
    /// splitting or decoding it (the registry's hot routes are literal); any other path goes
    /// through [`Router::find`] with its decoded segments. Both give the same answer.
    ///
    /// ```
    /// use mini::http::router::Router;
    /// let router = Router::new(&[("GET", "/aliveCheck", 1), ("GET", "/Add/{}/{}", 2)]);
    /// assert_eq!(router.find_path("GET", "/aliveCheck").unwrap().0, 1);
    /// let (route, params) = router.find_path("GET", "/Add/5/%36").unwrap();
    /// assert_eq!((route, params.join(" ")), (2, "5 6".to_string()));
    /// ```
    pub fn find_path<'p>(
        &self,
        method: &str,
        path: &'p str,
    ) -> Result<(R, Params<std::borrow::Cow<'p, str>>), Miss> {
        let hit = self
            .exact
            .iter()
            .find(|(m, pattern, _)| *pattern == path && *m == method);
        if let Some(&(_, _, value)) = hit {
            return Ok((value, Params::empty()));
        }
        self.find(method, crate::http::url::Segments::new(path))
    }

    /// Finds the route for a method and decoded path segments (such as [`crate::http::Request::segments`]),
    /// with the captured parameters.
    pub fn find<S>(
        &self,
        method: &str,
        segments: impl IntoIterator<Item = S>,
    ) -> Result<(R, Params<S>), Miss>
    where
        S: AsRef<str> + Default,
    {
        // One slot more than any pattern has, so a longer path matches none.
        let mut segs: [S; MAX_PARTS + 1] = std::array::from_fn(|_| S::default());
        let mut count = 0;
        for seg in segments.into_iter().take(MAX_PARTS + 1) {
            segs[count] = seg;
            count += 1;
        }
        let segs = &mut segs[..count];
        let mut allow = Vec::new();
        for (m, parts, value) in &self.routes {
            if !matches(parts, segs) {
                continue;
            }
            if *m == method {
                return Ok((*value, capture(parts, segs)));
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

fn matches<S: AsRef<str>>(parts: &[Part], segments: &[S]) -> bool {
    parts.len() == segments.len()
        && parts.iter().zip(segments).all(|(part, seg)| match part {
            Part::Literal(lit) => *lit == seg.as_ref(),
            Part::Param => true,
        })
}

impl<S: Default> Params<S> {
    fn empty() -> Params<S> {
        Params {
            items: std::array::from_fn(|_| S::default()),
            len: 0,
        }
    }
}

/// Moves the parameters out of matched segments.
fn capture<S: Default>(parts: &[Part], segments: &mut [S]) -> Params<S> {
    let mut items: [S; MAX_PARAMS] = std::array::from_fn(|_| S::default());
    let mut len = 0;
    for (part, seg) in parts.iter().zip(segments) {
        if *part == Part::Param && len < MAX_PARAMS {
            items[len] = std::mem::take(seg);
            len += 1;
        }
    }
    Params { items, len }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(path: &str) -> Vec<String> {
        crate::http::url::Segments::new(path)
            .map(|s| s.into_owned())
            .collect()
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
        assert_eq!(r.find("GET", segs("/")).unwrap().0, 0);
        let s = segs("/v1/services/add/127.0.0.1:1");
        let (route, params) = r.find("DELETE", s.iter().map(String::as_str)).unwrap();
        assert_eq!((route, params.to_vec()), (3, vec!["add", "127.0.0.1:1"]));
    }

    /// `find_path` agrees with `find` over decoded segments, for every path of a table where a
    /// parameterised route comes before a literal one it also matches.
    #[test]
    fn find_path_agrees_with_find() {
        let r = Router::new(&[
            ("GET", "/", 0),
            ("GET", "/v1/services/{}", 1),
            ("GET", "/v1/services/add", 2),
            ("POST", "/v1/services/add", 3),
            ("GET", "/aliveCheck", 4),
        ]);
        // The shadowed literal is not in the fast table; the POST one is.
        let exact: Vec<u8> = r.exact.iter().map(|e| e.2).collect();
        assert_eq!(exact, [0, 3, 4]);
        for path in [
            "/",
            "",
            "//",
            "/aliveCheck",
            "/aliveCheck/",
            "/alive%43heck",
            "/v1/services/add",
            "/v1/services/ad%64",
            "/v1/services/",
            "/v1/services",
            "/nope",
        ] {
            for method in ["GET", "POST", "PUT"] {
                let slow = r.find(method, segs(path)).map(|(v, p)| (v, p.to_vec()));
                let fast = r
                    .find_path(method, path)
                    .map(|(v, p)| (v, p.iter().map(|s| s.to_string()).collect()));
                assert_eq!(fast, slow, "{method} {path}");
            }
        }
    }

    #[test]
    fn unknown_path_is_404_and_wrong_method_is_405_with_allow() {
        let r = router();
        assert_eq!(r.find("GET", segs("/nope")).err(), Some(Miss::Path));
        assert_eq!(
            r.find("GET", segs("/v1/services/add/")).err(),
            Some(Miss::Method(vec!["PUT", "DELETE"]))
        );
        let long = segs("/v1/services/a/b/c/d/e/f/g/h/i");
        assert_eq!(r.find("GET", long).err(), Some(Miss::Path));
        let resp = Miss::Method(vec!["PUT", "DELETE"]).response("GET", "/x");
        assert_eq!(resp.status, 405);
        assert_eq!(resp.headers, vec![("Allow", "PUT, DELETE".to_string())]);
        assert_eq!(
            Miss::Path.response("GET", "/x\r\n").body,
            b"no route for /x\n"
        );
    }
}
