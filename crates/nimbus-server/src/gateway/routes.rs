//! The gateway's route table: which function's HTTP route a request path and method select.

use nimbus_core::policy::StagePath;
use nimbus_core::{ApiKind, HttpMethod, HttpRoute};
use percent_encoding::percent_decode_str;

/// The `http` and `httpApi` routes of all functions, sorted so that the first route
/// matching a request is the one API Gateway would select.
#[derive(Debug)]
pub(crate) struct RouteTable {
    entries: Vec<Entry>,
}

/// The route selected for a request, with its path parameters.
#[derive(Debug, PartialEq)]
pub(crate) struct RouteMatch<'a> {
    /// Index of the function the route belongs to, as given to [`RouteTable::new`].
    pub(crate) function_idx: usize,
    /// The route as the manifest declares it.
    pub(crate) route: &'a HttpRoute,
    /// `{param}` values, percent-decoded, in template order. A greedy `{proxy+}`
    /// parameter holds the rest of the path without its leading slash.
    pub(crate) path_params: Vec<(String, String)>,
    /// The stage the request named as its first path segment (`/dev/items` for the REST
    /// route `/items`), if it did.
    pub(crate) url_stage: Option<&'a str>,
}

#[derive(Debug)]
struct Entry {
    function_idx: usize,
    route: HttpRoute,
    pattern: Pattern,
}

#[derive(Debug, PartialEq, Eq)]
enum Pattern {
    /// The segments of a template such as `/items/{id}`; `/` has none.
    Segments(Vec<Segment>),
    /// The `httpApi: '*'` route (`$default` in API Gateway), which matches anything.
    CatchAll,
}

/// One segment of a path template.
#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Greedy(String),
}

impl RouteTable {
    pub(crate) fn new(routes: Vec<(usize, HttpRoute)>) -> RouteTable {
        let mut entries: Vec<Entry> = routes
            .into_iter()
            .map(|(function_idx, route)| Entry {
                function_idx,
                pattern: Pattern::parse(&route.path),
                route,
            })
            .collect();
        // API Gateway picks the most specific route: a literal segment beats a `{param}`,
        // which beats a greedy `{proxy+}`, compared from the left; for the same path a
        // named method beats `ANY`; the `$default` catch-all comes last. See "Routing API
        // requests" in https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-routes.html
        // The sort is stable, so of two identical routes the first declared wins.
        entries.sort_by(|a, b| a.precedence().cmp(b.precedence()));
        RouteTable { entries }
    }

    /// The route API Gateway would select for `method` and `path` (without query), if any,
    /// with every route answering at its own path.
    pub(crate) fn find(&self, method: &http::Method, path: &str) -> Option<RouteMatch<'_>> {
        self.find_where(method, path, |_| true)
    }

    /// The route a request selects when REST routes answer under their stage as
    /// `stage_path` says. A path that starts with `/{stage}` is first tried as a REST path
    /// without it, so `/dev/items` reaches the REST route `/items` even beside an
    /// `httpApi` catch-all; HTTP API routes (the `$default` stage) never take the prefix.
    pub(crate) fn select<'a>(
        &'a self,
        method: &http::Method,
        path: &str,
        stage: &'a str,
        stage_path: StagePath,
    ) -> Option<RouteMatch<'a>> {
        let is_rest = |route: &HttpRoute| route.api == ApiKind::Rest;
        if stage_path != StagePath::Off
            && let Some(rest) = strip_stage(path, stage)
            && let Some(mut matched) = self.find_where(method, rest, is_rest)
        {
            matched.url_stage = Some(stage);
            return Some(matched);
        }
        match stage_path {
            StagePath::Required => self.find_where(method, path, |route| !is_rest(route)),
            StagePath::Optional | StagePath::Off => self.find(method, path),
        }
    }

    /// Whether a route with `cors: true` matches `path` for some method, so an
    /// `OPTIONS` preflight request to it should be answered by the gateway.
    pub(crate) fn allows_cors_preflight(
        &self,
        path: &str,
        stage: &str,
        stage_path: StagePath,
    ) -> bool {
        let matches = |path: &str, accept: &dyn Fn(&HttpRoute) -> bool| {
            let path = normalize(path);
            self.entries.iter().any(|entry| {
                entry.route.cors && accept(&entry.route) && entry.pattern.matches(path)
            })
        };
        let is_rest = |route: &HttpRoute| route.api == ApiKind::Rest;
        let staged = stage_path != StagePath::Off
            && strip_stage(path, stage).is_some_and(|rest| matches(rest, &is_rest));
        staged
            || match stage_path {
                StagePath::Required => matches(path, &|route| !is_rest(route)),
                StagePath::Optional | StagePath::Off => matches(path, &|_| true),
            }
    }

    fn find_where(
        &self,
        method: &http::Method,
        path: &str,
        accept: impl Fn(&HttpRoute) -> bool,
    ) -> Option<RouteMatch<'_>> {
        let original = path;
        let path = normalize(path);
        // HEAD does not fall back to GET routes: API Gateway treats it as its own method.
        let entry = self.entries.iter().find(|entry| {
            method_matches(&entry.route.method, method)
                && accept(&entry.route)
                && entry.pattern.matches(path)
        })?;
        Some(RouteMatch {
            function_idx: entry.function_idx,
            route: &entry.route,
            path_params: entry
                .pattern
                .params(original.strip_prefix('/').unwrap_or(original)),
            url_stage: None,
        })
    }
}

/// `path` without its leading `/{stage}` segment (`/` when nothing follows it), if it
/// has one.
pub(crate) fn strip_stage<'a>(path: &'a str, stage: &str) -> Option<&'a str> {
    let rest = path.strip_prefix('/')?.strip_prefix(stage)?;
    if rest.is_empty() {
        Some("/")
    } else if rest.starts_with('/') {
        Some(rest)
    } else {
        None
    }
}

impl Entry {
    /// A key that sorts more specific routes first. Segment kinds are compared from the
    /// left, so `/a/{id}` beats `/{x}/b`; the literal text and parameter names play no
    /// part, so the first declared of two equivalent routes wins.
    fn precedence(&self) -> impl Iterator<Item = u8> + '_ {
        let segments: &[Segment] = match &self.pattern {
            Pattern::Segments(segments) => segments,
            Pattern::CatchAll => &[],
        };
        let catch_all = u8::from(self.pattern == Pattern::CatchAll);
        let method_rank = match self.route.method {
            HttpMethod::Named(_) => 0,
            HttpMethod::Any => 1,
        };
        // The catch-all flag leads so `$default` sorts after every template; the method
        // rank trails behind a terminator that sorts above every segment rank, so it only
        // decides between routes whose segments rank the same.
        std::iter::once(catch_all)
            .chain(segments.iter().map(Segment::rank))
            .chain([u8::MAX, method_rank])
    }
}

impl Pattern {
    fn parse(template: &str) -> Pattern {
        if template == "*" {
            return Pattern::CatchAll;
        }
        let path = normalize(template);
        let mut segments = Vec::new();
        let mut rest = first_segment(path);
        while let Some((segment, tail)) = next_segment(rest) {
            let greedy_name = segment
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix("+}"))
                .filter(|_| tail.is_none());
            let param_name = segment
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .map(|name| name.strip_suffix('+').unwrap_or(name));
            segments.push(match (greedy_name, param_name) {
                (Some(name), _) => Segment::Greedy(name.to_owned()),
                (None, Some(name)) => Segment::Param(name.to_owned()),
                (None, None) => Segment::Literal(segment.to_owned()),
            });
            rest = tail;
        }
        Pattern::Segments(segments)
    }

    /// Whether the normalized `path` matches, without allocating.
    fn matches(&self, path: &str) -> bool {
        let Pattern::Segments(segments) = self else {
            return true;
        };
        let mut rest = first_segment(path);
        for segment in segments {
            if let Segment::Greedy(_) = segment {
                // A greedy parameter needs at least one segment: `/a/{proxy+}` does not
                // match `/a`.
                return rest.is_some_and(|r| !r.is_empty());
            }
            let Some((value, tail)) = next_segment(rest) else {
                return false;
            };
            let ok = match segment {
                Segment::Literal(literal) => literal == value,
                _ => !value.is_empty(),
            };
            if !ok {
                return false;
            }
            rest = tail;
        }
        rest.is_none()
    }

    /// The parameters of a `path` that [`Pattern::matches`], given with its trailing
    /// slash, if any, so that a greedy parameter keeps it as the client sent it.
    fn params(&self, path: &str) -> Vec<(String, String)> {
        let Pattern::Segments(segments) = self else {
            return Vec::new();
        };
        let mut params = Vec::new();
        let mut rest = first_segment(path);
        for segment in segments {
            match segment {
                Segment::Greedy(name) => {
                    params.push((name.clone(), decode(rest.unwrap_or_default())));
                    break;
                }
                Segment::Param(name) => {
                    if let Some((value, _)) = next_segment(rest) {
                        params.push((name.clone(), decode(value)));
                    }
                }
                Segment::Literal(_) => {}
            }
            rest = next_segment(rest).and_then(|(_, tail)| tail);
        }
        params
    }
}

impl Segment {
    fn rank(&self) -> u8 {
        match self {
            Segment::Literal(_) => 0,
            Segment::Param(_) => 1,
            Segment::Greedy(_) => 2,
        }
    }
}

fn method_matches(route_method: &HttpMethod, method: &http::Method) -> bool {
    match route_method {
        HttpMethod::Any => true,
        HttpMethod::Named(name) => name == method.as_str(),
    }
}

/// Drops the leading slash and one trailing slash, so `/hello/` matches like `/hello`
/// and `/` becomes the empty path with no segments.
fn normalize(path: &str) -> &str {
    let path = path.strip_prefix('/').unwrap_or(path);
    path.strip_suffix('/').unwrap_or(path)
}

/// The remaining segments of a normalized path; `None` when there are none left.
fn first_segment(path: &str) -> Option<&str> {
    (!path.is_empty()).then_some(path)
}

fn next_segment(rest: Option<&str>) -> Option<(&str, Option<&str>)> {
    let rest = rest?;
    Some(match rest.split_once('/') {
        Some((segment, tail)) => (segment, Some(tail)),
        None => (rest, None),
    })
}

fn decode(value: &str) -> String {
    percent_decode_str(value).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests;
