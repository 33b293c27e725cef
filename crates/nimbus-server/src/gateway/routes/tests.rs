use expect_test::{Expect, expect};
use nimbus_core::policy::StagePath;
use nimbus_core::{ApiKind, HttpMethod, HttpRoute};

use super::RouteTable;

/// Routes as `<function_idx> <rest|http> <METHOD|ANY> <path> [cors]`, one a line.
fn table(spec: &str) -> RouteTable {
    let routes = spec
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let api = match words[1] {
                "rest" => ApiKind::Rest,
                "http" => ApiKind::Http,
                other => panic!("unknown api {other}"),
            };
            let method = match words[2] {
                "ANY" => HttpMethod::Any,
                other => HttpMethod::Named(other.to_owned()),
            };
            let route = HttpRoute {
                api,
                method,
                path: words[3].to_owned(),
                cors: words.get(4) == Some(&"cors"),
                authorizer: None,
                private: false,
                rate_limit: None,
            };
            (words[0].parse().expect("function index"), route)
        })
        .collect();
    RouteTable::new(routes)
}

const ROUTES: &str = "
    0 rest ANY /{proxy+}
    1 rest GET /items
    2 rest GET /items/{id}
    3 rest POST /items/{id}
    4 rest ANY /items/{id}
    5 rest GET /items/special
    6 rest GET /items/{id}/parts/{part}
    7 rest GET /files/{path+} cors
    8 rest GET /
    9 rest GET /a/{x}/c
    10 rest GET /a/b/{y}
";

/// `request` is `METHOD /path`; the result shows the function, the route and its params.
fn check_in(spec: &str, request: &str, expect: Expect) {
    let (method, path) = request.split_once(' ').expect("METHOD /path");
    let method = http::Method::from_bytes(method.as_bytes()).expect("method");
    let table = table(spec);
    let actual = match table.find(&method, path) {
        None => "no match".to_owned(),
        Some(m) => {
            let mut out = format!("fn {}: {} {}", m.function_idx, m.route.method, m.route.path);
            for (name, value) in &m.path_params {
                out.push_str(&format!(" {name}={value:?}"));
            }
            out
        }
    };
    expect.assert_eq(&actual);
}

fn check(request: &str, expect: Expect) {
    check_in(ROUTES, request, expect);
}

fn check_preflight(spec: &str, path: &str, expect: Expect) {
    let table = table(spec);
    expect.assert_eq(
        &table
            .allows_cors_preflight(path, "dev", StagePath::Optional)
            .to_string(),
    );
}

/// As `check_in`, with REST routes answering under the stage `dev` as `stage_path` says;
/// a match under the stage is marked `(at /dev)`.
fn check_staged(spec: &str, stage_path: StagePath, request: &str, expect: Expect) {
    let (method, path) = request.split_once(' ').expect("METHOD /path");
    let method = http::Method::from_bytes(method.as_bytes()).expect("method");
    let table = table(spec);
    let actual = match table.select(&method, path, "dev", stage_path) {
        None => "no match".to_owned(),
        Some(m) => {
            let mut out = format!("fn {}: {} {}", m.function_idx, m.route.method, m.route.path);
            for (name, value) in &m.path_params {
                out.push_str(&format!(" {name}={value:?}"));
            }
            if let Some(stage) = m.url_stage {
                out.push_str(&format!(" (at /{stage})"));
            }
            out
        }
    };
    expect.assert_eq(&actual);
}

const STAGED: &str = "
    0 rest GET /items/{id}
    1 rest GET /
    2 http GET /api/{proxy+}
    3 http ANY *
    4 rest GET /dev/literal
";

#[test]
fn rest_route_answers_under_its_stage_and_without_it() {
    let optional = StagePath::Optional;
    check_staged(
        STAGED,
        optional,
        "GET /dev/items/7",
        expect![[r#"fn 0: GET /items/{id} id="7" (at /dev)"#]],
    );
    check_staged(
        STAGED,
        optional,
        "GET /items/7",
        expect![[r#"fn 0: GET /items/{id} id="7""#]],
    );
    check_staged(
        STAGED,
        optional,
        "GET /dev",
        expect![[r#"fn 1: GET / (at /dev)"#]],
    );
    check_staged(
        STAGED,
        optional,
        "GET /dev/",
        expect![[r#"fn 1: GET / (at /dev)"#]],
    );
    check_staged(
        STAGED,
        optional,
        "GET /development/items/7",
        expect![[r#"fn 3: ANY *"#]],
    );
    check_staged(
        STAGED,
        optional,
        "GET /dev/literal",
        expect![[r#"fn 4: GET /dev/literal"#]],
    );
}

#[test]
fn http_api_routes_never_take_the_stage() {
    let optional = StagePath::Optional;
    check_staged(
        STAGED,
        optional,
        "GET /api/x",
        expect![[r#"fn 2: GET /api/{proxy+} proxy="x""#]],
    );
    check_staged(
        STAGED,
        optional,
        "GET /dev/api/x",
        expect![[r#"fn 3: ANY *"#]],
    );
}

#[test]
fn required_stage_path_serves_rest_routes_only_under_the_stage() {
    let required = StagePath::Required;
    check_staged(
        STAGED,
        required,
        "GET /dev/items/7",
        expect![[r#"fn 0: GET /items/{id} id="7" (at /dev)"#]],
    );
    check_staged(
        STAGED,
        required,
        "GET /items/7",
        expect![[r#"fn 3: ANY *"#]],
    );
    check_staged(
        "0 rest GET /items/{id}",
        required,
        "GET /items/7",
        expect![[r#"no match"#]],
    );
    check_staged(
        STAGED,
        required,
        "GET /api/x",
        expect![[r#"fn 2: GET /api/{proxy+} proxy="x""#]],
    );
}

#[test]
fn stage_path_off_serves_rest_routes_only_at_their_own_path() {
    let off = StagePath::Off;
    check_staged(
        "0 rest GET /items/{id}",
        off,
        "GET /dev/items/7",
        expect![[r#"no match"#]],
    );
    check_staged(
        STAGED,
        off,
        "GET /items/7",
        expect![[r#"fn 0: GET /items/{id} id="7""#]],
    );
}

#[test]
fn literal_route_matches() {
    check("GET /items", expect![[r#"fn 1: GET /items"#]]);
}

#[test]
fn literal_segment_beats_param() {
    check(
        "GET /items/special",
        expect![[r#"fn 5: GET /items/special"#]],
    );
}

#[test]
fn param_beats_greedy() {
    check(
        "GET /items/42",
        expect![[r#"fn 2: GET /items/{id} id="42""#]],
    );
}

#[test]
fn named_method_beats_any() {
    check(
        "POST /items/42",
        expect![[r#"fn 3: POST /items/{id} id="42""#]],
    );
}

#[test]
fn any_matches_other_methods_on_the_same_path() {
    check(
        "DELETE /items/42",
        expect![[r#"fn 4: ANY /items/{id} id="42""#]],
    );
}

#[test]
fn head_does_not_fall_back_to_get() {
    check(
        "HEAD /items",
        expect![[r#"fn 0: ANY /{proxy+} proxy="items""#]],
    );
}

#[test]
fn greedy_takes_the_rest_of_the_path() {
    check(
        "PUT /x/y/z",
        expect![[r#"fn 0: ANY /{proxy+} proxy="x/y/z""#]],
    );
}

#[test]
fn greedy_under_a_prefix() {
    check(
        "GET /files/a/b.txt",
        expect![[r#"fn 7: GET /files/{path+} path="a/b.txt""#]],
    );
}

#[test]
fn greedy_needs_at_least_one_segment() {
    check("POST /", expect![[r#"no match"#]]);
}

#[test]
fn root_route() {
    check("GET /", expect![[r#"fn 8: GET /"#]]);
}

#[test]
fn two_params() {
    check(
        "GET /items/7/parts/wheel",
        expect![[r#"fn 6: GET /items/{id}/parts/{part} id="7" part="wheel""#]],
    );
}

#[test]
fn earlier_literal_beats_later_literal() {
    check("GET /a/b/c", expect![[r#"fn 10: GET /a/b/{y} y="c""#]]);
}

#[test]
fn params_are_percent_decoded() {
    check(
        "GET /items/caf%C3%A9%20au%2Flait",
        expect![[r#"fn 2: GET /items/{id} id="café au/lait""#]],
    );
}

#[test]
fn greedy_param_is_percent_decoded() {
    check(
        "GET /files/a%20b/c",
        expect![[r#"fn 7: GET /files/{path+} path="a b/c""#]],
    );
}

#[test]
fn trailing_slash_is_ignored() {
    check("GET /items/", expect![[r#"fn 1: GET /items"#]]);
}

#[test]
fn trailing_slash_after_param_is_ignored() {
    check(
        "GET /items/42/",
        expect![[r#"fn 2: GET /items/{id} id="42""#]],
    );
}

#[test]
fn empty_segment_does_not_match_param() {
    check_in(
        "2 rest GET /items/{id}",
        "GET /items//",
        expect![[r#"no match"#]],
    );
}

#[test]
fn paths_are_case_sensitive() {
    check_in("1 rest GET /items", "GET /Items", expect![[r#"no match"#]]);
}

#[test]
fn wrong_method_is_no_match() {
    check_in("1 rest GET /items", "POST /items", expect![[r#"no match"#]]);
}

#[test]
fn longer_path_is_no_match() {
    check_in(
        "1 rest GET /items",
        "GET /items/1",
        expect![[r#"no match"#]],
    );
}

#[test]
fn catch_all_comes_last() {
    let spec = "
        0 http ANY *
        1 http GET /hello
        2 http ANY /{proxy+}
    ";
    check_in(spec, "GET /hello", expect![[r#"fn 1: GET /hello"#]]);
    check_in(
        spec,
        "GET /other",
        expect![[r#"fn 2: ANY /{proxy+} proxy="other""#]],
    );
    check_in(spec, "GET /", expect![[r#"fn 0: ANY *"#]]);
}

#[test]
fn catch_all_matches_anything() {
    check_in("0 http ANY *", "PATCH /a/b/c", expect![[r#"fn 0: ANY *"#]]);
}

#[test]
fn precedence_does_not_depend_on_declaration_order() {
    let spec = "
        0 http GET /{proxy+}
        1 http ANY /items/{id}
        2 http GET /items/{id}
    ";
    check_in(
        spec,
        "GET /items/1",
        expect![[r#"fn 2: GET /items/{id} id="1""#]],
    );
    check_in(
        spec,
        "PUT /items/1",
        expect![[r#"fn 1: ANY /items/{id} id="1""#]],
    );
}

#[test]
fn path_specificity_beats_method() {
    let spec = "
        0 http GET /items/{proxy+}
        1 http ANY /items/{id}
    ";
    check_in(
        spec,
        "GET /items/1",
        expect![[r#"fn 1: ANY /items/{id} id="1""#]],
    );
}

#[test]
fn first_declared_of_equivalent_routes_wins() {
    let spec = "
        3 http GET /items/{b}
        4 http GET /items/{a}
    ";
    check_in(
        spec,
        "GET /items/1",
        expect![[r#"fn 3: GET /items/{b} b="1""#]],
    );
}

#[test]
fn template_with_trailing_slash() {
    check_in(
        "0 rest GET /hello/",
        "GET /hello",
        expect![[r#"fn 0: GET /hello/"#]],
    );
}

#[test]
fn preflight_allowed_for_cors_route() {
    check_preflight(ROUTES, "/files/a", expect![[r#"true"#]]);
}

#[test]
fn preflight_allowed_for_cors_route_under_its_stage() {
    check_preflight(ROUTES, "/dev/files/a", expect![[r#"true"#]]);
    check_preflight(
        "0 http GET /files/{p+} cors",
        "/dev/files/a",
        expect![[r#"false"#]],
    );
}

#[test]
fn preflight_not_allowed_without_cors() {
    check_preflight(ROUTES, "/items", expect![[r#"false"#]]);
}

#[test]
fn preflight_allowed_for_any_method() {
    check_preflight("0 http POST /submit cors", "/submit/", expect![[r#"true"#]]);
}

#[test]
fn preflight_for_cors_catch_all() {
    check_preflight("0 http ANY * cors", "/anything", expect![[r#"true"#]]);
}

#[test]
fn greedy_keeps_a_trailing_slash() {
    check(
        "GET /files/dir/",
        expect![[r#"fn 7: GET /files/{path+} path="dir/""#]],
    );
}
