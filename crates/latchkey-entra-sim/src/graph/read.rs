//! Directory reads: users, groups, members/owners, service principals, app role assignments.

use std::cmp::Ordering;

use http::StatusCode;
use serde_json::{Map, Value, json};

use super::out::*;
use super::perms::*;
use super::{GReq, GResult, GraphError};
use crate::json;
use crate::model::{Directory, ObjKind, ObjRef};
use crate::odata::{
    Expr, FilterError, FilterRules, check_filter, decode_token, encode_token, eval, mentions,
    parse_filter,
};
use crate::server::{State, json_response};

/// `$expand` of a collection is cut here with no continuation link, as Graph does.
pub(crate) const EXPAND_LIMIT: usize = 20;

pub(crate) fn page_size(r: &GReq, default: usize, max: usize) -> Result<usize, GraphError> {
    match r.param("top") {
        None => Ok(default.min(max)),
        Some(t) => match t.trim().parse::<i64>() {
            Ok(n) if (1..=999).contains(&n) => Ok((n as usize).min(max)),
            _ => Err(GraphError::unsupported_query(format!(
                "Invalid page size specified: '{t}'. Must be between 1 and 999 inclusive."
            ))),
        },
    }
}

pub(crate) fn filter_error(e: FilterError, rules: &FilterRules) -> GraphError {
    match e {
        FilterError::Syntax(m) => GraphError::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("Invalid filter clause: {m}"),
        ),
        FilterError::NeedsAdvanced(op) => GraphError::unsupported_query(format!(
            "Operator '{op}' is not supported because the required parameters might be missing. Try adding $count=true query parameter and ConsistencyLevel:eventual header. Refer to https://aka.ms/graph-docs/advanced-queries for more information"
        )),
        FilterError::UnsupportedProperty(p) => GraphError::unsupported_query(format!(
            "Unsupported or invalid query filter clause specified for property '{p}' of resource '{}'.",
            rules.resource
        )),
    }
}

pub(crate) fn prep_filter(r: &GReq, rules: &FilterRules) -> Result<Option<Expr>, GraphError> {
    let Some(f) = r.param("filter") else {
        return Ok(None);
    };
    let e = parse_filter(f).map_err(|e| filter_error(e, rules))?;
    check_filter(&e, rules, r.advanced()).map_err(|e| filter_error(e, rules))?;
    Ok(Some(e))
}

pub(crate) fn bad_token() -> GraphError {
    GraphError::new(
        StatusCode::BAD_REQUEST,
        "Directory_ExpiredPageToken",
        "The specified page token value has expired and can no longer be included in your request.",
    )
}

/// `$search="prop:value"` (needs `ConsistencyLevel: eventual`).
fn prep_search(r: &GReq) -> Result<Option<Vec<(String, String)>>, GraphError> {
    let Some(s) = r.param("search") else {
        return Ok(None);
    };
    if !r.eventual() {
        return Err(GraphError::unsupported_query(
            "Request with $search query parameter only works through MSGraph with a special request header: 'ConsistencyLevel: eventual'",
        ));
    }
    let mut clauses = Vec::new();
    for part in s.split(" OR ").flat_map(|p| p.split(" AND ")) {
        let p = part.trim().trim_matches('"');
        match p.split_once(':') {
            Some((k, v)) => clauses.push((k.trim().to_string(), v.trim().to_ascii_lowercase())),
            None => {
                return Err(GraphError::new(
                    StatusCode::BAD_REQUEST,
                    "Request_UnsupportedQuery",
                    "Syntax error: character '\"' is not valid at position 0 in '$search'. The search expression must be of the form \"property:value\".",
                ));
            }
        }
    }
    Ok(Some(clauses))
}

fn search_matches(f: &dyn crate::odata::Filterable, clauses: &[(String, String)]) -> bool {
    clauses.iter().any(|(k, v)| match f.prop(k) {
        Some(crate::odata::PV::S(s)) => s.to_ascii_lowercase().contains(v.as_str()),
        _ => false,
    })
}

/// `$orderby`, with Graph's default-mode restrictions.
fn prep_orderby(
    r: &GReq,
    default_ok: &[&str],
    has_filter: bool,
) -> Result<Option<(String, bool)>, GraphError> {
    let Some(o) = r.param("orderby") else {
        return Ok(None);
    };
    let mut parts = o.split_whitespace();
    let prop = parts.next().unwrap_or("").to_string();
    let desc = parts.next().is_some_and(|d| d.eq_ignore_ascii_case("desc"));
    let ok_default = default_ok.iter().any(|p| p.eq_ignore_ascii_case(&prop));
    if !r.advanced() && (has_filter || !ok_default) {
        return Err(GraphError::unsupported_query(
            "Sorting not supported for current query.",
        ));
    }
    Ok(Some((prop, desc)))
}

pub(crate) struct Page {
    pub items: Vec<usize>,
    pub next: Option<String>,
}

/// Pages over a table by index (stable under appends), or by offset in a sorted order.
pub(crate) fn page_indices(
    r: &GReq,
    kind: &str,
    n: usize,
    matches: &dyn Fn(usize) -> bool,
    sort: Option<&dyn Fn(usize, usize) -> Ordering>,
    top: usize,
) -> Result<Page, GraphError> {
    let cursor = match r.param("skiptoken") {
        None => None,
        Some(t) => Some(
            decode_token(kind, t)
                .filter(|f| f.len() == 2)
                .ok_or_else(bad_token)?,
        ),
    };
    let mut items = Vec::with_capacity(top.min(n));
    let mut next = None;
    match sort {
        None => {
            let start = cursor.map(|c| c[1] as usize).unwrap_or(0);
            for i in start..n {
                if matches(i) {
                    items.push(i);
                    if items.len() == top {
                        if i + 1 < n {
                            next = Some(encode_token(kind, &[0, (i + 1) as u64]));
                        }
                        break;
                    }
                }
            }
        }
        Some(cmp) => {
            let offset = cursor.map(|c| c[1] as usize).unwrap_or(0);
            let mut all: Vec<usize> = (0..n).filter(|&i| matches(i)).collect();
            all.sort_by(|a, b| cmp(*a, *b));
            let end = (offset + top).min(all.len());
            if offset < end {
                items.extend_from_slice(&all[offset..end]);
            }
            if end < all.len() {
                next = Some(encode_token(kind, &[1, end as u64]));
            }
        }
    }
    Ok(Page { items, next })
}

pub(crate) fn collection_body(
    r: &GReq,
    ctx: &str,
    count: Option<usize>,
    next: Option<String>,
    items: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(items.len() + 256);
    out.extend_from_slice(b"{\"@odata.context\":");
    json::str(&mut out, &r.context(ctx));
    if let Some(c) = count {
        out.extend_from_slice(b",\"@odata.count\":");
        out.extend_from_slice(c.to_string().as_bytes());
    }
    if let Some(t) = next {
        out.extend_from_slice(b",\"@odata.nextLink\":");
        json::str(&mut out, &r.next_link(&t));
    }
    out.extend_from_slice(b",\"value\":[");
    out.extend_from_slice(items);
    out.extend_from_slice(b"]}");
    out
}

fn entity_body(r: &GReq, ctx: &str, obj: &[u8]) -> Vec<u8> {
    // obj is `{...}`: splice the context in front of its properties.
    let mut out = Vec::with_capacity(obj.len() + 128);
    out.extend_from_slice(b"{\"@odata.context\":");
    json::str(&mut out, &r.context(ctx));
    if obj.len() > 2 {
        out.push(b',');
        out.extend_from_slice(&obj[1..]);
    } else {
        out.push(b'}');
    }
    out
}

pub(crate) fn ok(body: Vec<u8>) -> GResult {
    Ok(json_response(StatusCode::OK, body))
}

/// Checks for `signInActivity`: the permission, then the P1 licence.
pub(crate) fn check_sign_in(st: &State, r: &GReq) -> Result<(), GraphError> {
    r.require(AUDIT_READ)?;
    if !st.faults().premium_p1 {
        return Err(GraphError::new(
            StatusCode::FORBIDDEN,
            "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
            "Neither tenant is B2C or tenant doesn't have premium license",
        ));
    }
    Ok(())
}

fn expand_manager(r: &GReq) -> Result<bool, GraphError> {
    match r.param("expand") {
        None => Ok(false),
        Some(e) if e.trim().to_ascii_lowercase().starts_with("manager") => Ok(true),
        Some(e) => Err(GraphError::bad_request(format!(
            "Could not find a property named '{}' on type 'microsoft.graph.user'.",
            e.split('(').next().unwrap_or(e)
        ))),
    }
}

fn write_user_full(out: &mut Vec<u8>, d: &Directory, ui: usize, mask: u64, manager: bool) {
    let start = out.len();
    write_user(out, d, ui, mask, false);
    if manager {
        out.pop();
        if out.len() > start + 1 {
            out.push(b',');
        }
        out.extend_from_slice(b"\"manager\":");
        match d.users[ui]
            .manager
            .map(|m| m as usize)
            .filter(|&m| d.users[m].deleted.is_none())
        {
            Some(m) => {
                let mm = mask_names(
                    USER_PROPS,
                    &[
                        "id",
                        "displayName",
                        "mail",
                        "userPrincipalName",
                        "employeeId",
                    ],
                );
                write_user(out, d, m, mm, true);
            }
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
    }
}

fn mask_names(props: &[&str], names: &[&str]) -> u64 {
    names
        .iter()
        .filter_map(|n| props.iter().position(|p| p == n))
        .fold(0, |m, i| m | (1 << i))
}

pub(crate) fn list_users(st: &State, r: &GReq) -> GResult {
    r.require(USER_READ)?;
    let mask = user_select(r)?;
    let filter = prep_filter(r, &USER_RULES)?;
    let sign_in = mask & (1 << U_SIGNIN) != 0
        || filter
            .as_ref()
            .is_some_and(|f| mentions(f, "signInActivity"));
    if sign_in {
        check_sign_in(st, r)?;
    }
    let search = prep_search(r)?;
    let order = prep_orderby(r, &["displayName", "userPrincipalName"], filter.is_some())?;
    let manager = expand_manager(r)?;
    // Graph caps pages at 500 when sign-in activity is involved.
    let top = page_size(r, 100, if sign_in { 500 } else { 999 })?;
    // Known quirk: filtering on assignedLicenses without advanced parameters breaks on the next link.
    if r.param("skiptoken").is_some()
        && filter
            .as_ref()
            .is_some_and(|f| mentions(f, "assignedLicenses"))
        && !r.advanced()
    {
        return Err(bad_token());
    }
    let d = st.read();
    let matches = |i: usize| {
        d.users[i].deleted.is_none()
            && filter
                .as_ref()
                .is_none_or(|f| eval(f, &UserF { d: &d, ui: i }))
            && search
                .as_ref()
                .is_none_or(|s| search_matches(&UserF { d: &d, ui: i }, s))
    };
    let key = |i: usize, prop: &str| -> String {
        let u = &d.users[i];
        match prop.to_ascii_lowercase().as_str() {
            "userprincipalname" => u.upn.to_ascii_lowercase(),
            "createddatetime" => format!("{:012}", u.created),
            _ => u.display_name.to_ascii_lowercase(),
        }
    };
    let sorter = order.as_ref().map(|(p, desc)| {
        let p = p.clone();
        let desc = *desc;
        move |a: usize, b: usize| {
            let o = key(a, &p).cmp(&key(b, &p)).then(a.cmp(&b));
            if desc { o.reverse() } else { o }
        }
    });
    let page = page_indices(
        r,
        "users",
        d.users.len(),
        &matches,
        sorter
            .as_ref()
            .map(|f| f as &dyn Fn(usize, usize) -> Ordering),
        top,
    )?;
    let count = (r.advanced() && r.param("skiptoken").is_none())
        .then(|| (0..d.users.len()).filter(|&i| matches(i)).count());
    let mut items = Vec::with_capacity(page.items.len() * 400);
    for (k, &i) in page.items.iter().enumerate() {
        if k > 0 {
            items.push(b',');
        }
        write_user_full(&mut items, &d, i, mask, manager);
    }
    let ctx = match r.param("select") {
        Some(s) => format!("users({s})"),
        None => "users".to_string(),
    };
    ok(collection_body(r, &ctx, count, page.next, &items))
}

pub(crate) fn get_user(st: &State, r: &GReq, id: &str) -> GResult {
    r.require(USER_READ)?;
    let mask = user_select(r)?;
    if mask & (1 << U_SIGNIN) != 0 {
        check_sign_in(st, r)?;
    }
    let manager = expand_manager(r)?;
    let d = st.read();
    let ui = d.find_user(id).ok_or_else(|| GraphError::not_found(id))?;
    let mut obj = Vec::new();
    write_user_full(&mut obj, &d, ui, mask, manager);
    ok(entity_body(r, "users/$entity", &obj))
}

pub(crate) fn manager(st: &State, r: &GReq, id: &str) -> GResult {
    r.require(USER_READ)?;
    let d = st.read();
    let ui = d.find_user(id).ok_or_else(|| GraphError::not_found(id))?;
    match d.users[ui]
        .manager
        .map(|m| m as usize)
        .filter(|&m| d.users[m].deleted.is_none())
    {
        Some(m) => {
            let mut obj = Vec::new();
            write_user(&mut obj, &d, m, user_default(r.ver), true);
            ok(entity_body(r, "directoryObjects/$entity", &obj))
        }
        None => Err(GraphError::not_found("manager")),
    }
}

pub(crate) fn count(st: &State, r: &GReq, what: &str) -> GResult {
    match what {
        "users" => r.require(USER_READ)?,
        "groups" => r.require(GROUP_READ)?,
        _ => r.require(SP_READ)?,
    }
    if !r.eventual() {
        return Err(GraphError::bad_request(
            "$count is not currently supported.",
        ));
    }
    let d = st.read();
    let n = match what {
        "users" => {
            let f = prep_filter(r, &USER_RULES)?;
            (0..d.users.len())
                .filter(|&i| {
                    d.users[i].deleted.is_none()
                        && f.as_ref().is_none_or(|f| eval(f, &UserF { d: &d, ui: i }))
                })
                .count()
        }
        "groups" => {
            let f = prep_filter(r, &GROUP_RULES)?;
            (0..d.groups.len())
                .filter(|&i| {
                    d.groups[i].deleted.is_none()
                        && f.as_ref().is_none_or(|f| eval(f, &GroupF { d: &d, gi: i }))
                })
                .count()
        }
        _ => {
            let f = prep_filter(r, &SP_RULES)?;
            d.sps
                .iter()
                .filter(|s| s.deleted.is_none())
                .filter(|s| {
                    f.as_ref()
                        .is_none_or(|f| eval(f, &JsonF(&Value::Object(sp_value(&d, s)))))
                })
                .count()
        }
    };
    Ok(text(n))
}

fn text(n: usize) -> axum::response::Response {
    axum::response::Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "text/plain;charset=utf-8")
        .body(axum::body::Body::from(n.to_string()))
        .unwrap_or_default()
}

fn expand_rel(r: &GReq, allowed: &[&str], type_name: &str) -> Result<Option<String>, GraphError> {
    match r.param("expand") {
        None => Ok(None),
        Some(e) => {
            let name = e.split('(').next().unwrap_or(e).trim();
            match allowed.iter().find(|a| a.eq_ignore_ascii_case(name)) {
                Some(a) => Ok(Some(a.to_string())),
                None => Err(GraphError::bad_request(format!(
                    "Could not find a property named '{name}' on type 'microsoft.graph.{type_name}'."
                ))),
            }
        }
    }
}

fn write_links_inline(out: &mut Vec<u8>, d: &Directory, key: &str, links: &[ObjRef], r: &GReq) {
    // Inline expansion is truncated without a next link; v1.0 also drops service principals.
    out.pop();
    if out.last() != Some(&b'{') {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":[");
    let sel = MixedSelect {
        user: mask_names(
            USER_PROPS,
            &["id", "displayName", "userPrincipalName", "mail"],
        ),
        group: mask_names(GROUP_PROPS, &["id", "displayName", "mail"]),
        sp: Some(vec![
            "id".into(),
            "displayName".into(),
            "appId".into(),
            "servicePrincipalType".into(),
        ]),
    };
    for (n, &m) in links
        .iter()
        .filter(|m| visible_link(d, r, **m))
        .take(EXPAND_LIMIT)
        .enumerate()
    {
        if n > 0 {
            out.push(b',');
        }
        write_member(out, d, m, &sel);
    }
    out.extend_from_slice(b"]}");
}

fn visible_link(d: &Directory, r: &GReq, m: ObjRef) -> bool {
    !d.is_deleted(m) && (r.ver != super::Ver::V1 || m.kind() != ObjKind::ServicePrincipal)
}

pub(crate) fn list_groups(st: &State, r: &GReq) -> GResult {
    r.require(GROUP_READ)?;
    let mask = group_select(r)?;
    let filter = prep_filter(r, &GROUP_RULES)?;
    let search = prep_search(r)?;
    let order = prep_orderby(r, &["displayName"], filter.is_some())?;
    let expand = expand_rel(r, &["members", "owners"], "group")?;
    let top = page_size(r, 100, 999)?;
    let d = st.read();
    let matches = |i: usize| {
        d.groups[i].deleted.is_none()
            && filter
                .as_ref()
                .is_none_or(|f| eval(f, &GroupF { d: &d, gi: i }))
            && search
                .as_ref()
                .is_none_or(|s| search_matches(&GroupF { d: &d, gi: i }, s))
    };
    let sorter = order.as_ref().map(|(_, desc)| {
        let desc = *desc;
        let d = &d;
        move |a: usize, b: usize| {
            let o = d.groups[a]
                .display_name
                .to_ascii_lowercase()
                .cmp(&d.groups[b].display_name.to_ascii_lowercase())
                .then(a.cmp(&b));
            if desc { o.reverse() } else { o }
        }
    });
    let page = page_indices(
        r,
        "groups",
        d.groups.len(),
        &matches,
        sorter
            .as_ref()
            .map(|f| f as &dyn Fn(usize, usize) -> Ordering),
        top,
    )?;
    let count = (r.advanced() && r.param("skiptoken").is_none())
        .then(|| (0..d.groups.len()).filter(|&i| matches(i)).count());
    let mut items = Vec::new();
    for (k, &i) in page.items.iter().enumerate() {
        if k > 0 {
            items.push(b',');
        }
        write_group(&mut items, &d, i, mask, false);
        if let Some(rel) = &expand {
            let links = if rel == "members" {
                &d.groups[i].members
            } else {
                &d.groups[i].owners
            };
            write_links_inline(&mut items, &d, rel, links, r);
        }
    }
    let ctx = match r.param("select") {
        Some(s) => format!("groups({s})"),
        None => "groups".to_string(),
    };
    ok(collection_body(r, &ctx, count, page.next, &items))
}

pub(crate) fn get_group(st: &State, r: &GReq, id: &str) -> GResult {
    r.require(GROUP_READ)?;
    let mask = group_select(r)?;
    let expand = expand_rel(r, &["members", "owners"], "group")?;
    let d = st.read();
    let gi = d.find_group(id).ok_or_else(|| GraphError::not_found(id))?;
    let mut obj = Vec::new();
    write_group(&mut obj, &d, gi, mask, false);
    if let Some(rel) = &expand {
        let links = if rel == "members" {
            &d.groups[gi].members
        } else {
            &d.groups[gi].owners
        };
        write_links_inline(&mut obj, &d, rel, links, r);
    }
    ok(entity_body(r, "groups/$entity", &obj))
}

fn links_of<'a>(
    d: &'a Directory,
    parent: &str,
    id: &str,
    rel: &str,
) -> Result<&'a [ObjRef], GraphError> {
    if parent == "groups" {
        let gi = d.find_group(id).ok_or_else(|| GraphError::not_found(id))?;
        Ok(if rel == "members" {
            &d.groups[gi].members
        } else {
            &d.groups[gi].owners
        })
    } else {
        let si = d.find_sp(id).ok_or_else(|| GraphError::not_found(id))?;
        Ok(&d.sps[si].owners)
    }
}

fn cast_kind(cast: Option<&str>) -> Result<Option<ObjKind>, GraphError> {
    match cast {
        None => Ok(None),
        Some("microsoft.graph.user") => Ok(Some(ObjKind::User)),
        Some("microsoft.graph.group") => Ok(Some(ObjKind::Group)),
        Some("microsoft.graph.servicePrincipal") => Ok(Some(ObjKind::ServicePrincipal)),
        Some(other) => Err(GraphError::segment(other)),
    }
}

/// `GET /groups/{id}/members` (and owners, and `/servicePrincipals/{id}/owners`), paged by object order.
pub(crate) fn list_links(
    st: &State,
    r: &GReq,
    parent: &str,
    id: &str,
    rel: &str,
    cast: Option<&str>,
) -> GResult {
    r.require(if parent == "groups" {
        GROUP_READ
    } else {
        SP_READ
    })?;
    let kind = cast_kind(cast)?;
    let sel = mixed_select(r)?;
    let filter = prep_filter(r, &MEMBER_RULES)?;
    let search = prep_search(r)?;
    let top = page_size(r, 100, 999)?;
    let d = st.read();
    let links = links_of(&d, parent, id, rel)?;
    let start = match r.param("skiptoken") {
        None => 0,
        Some(t) => {
            let f = decode_token(rel, t)
                .filter(|f| f.len() == 1)
                .ok_or_else(bad_token)?;
            let after = f[0] as u32;
            links.partition_point(|m| m.raw() <= after)
        }
    };
    let matches = |m: ObjRef| {
        visible_link(&d, r, m)
            && kind.is_none_or(|k| m.kind() == k)
            && (filter.is_none() && search.is_none() || {
                let f = MemberF::new(&d, m);
                filter.as_ref().is_none_or(|e| eval(e, &f))
                    && search.as_ref().is_none_or(|s| search_matches(&f, s))
            })
    };
    let mut items = Vec::with_capacity(top * 512);
    let mut n = 0;
    let mut next = None;
    for (pos, &m) in links.iter().enumerate().skip(start) {
        if !matches(m) {
            continue;
        }
        if n > 0 {
            items.push(b',');
        }
        write_member(&mut items, &d, m, &sel);
        n += 1;
        if n == top {
            if pos + 1 < links.len() {
                next = Some(encode_token(rel, &[m.raw() as u64]));
            }
            break;
        }
    }
    let count = (r.advanced() && r.param("skiptoken").is_none())
        .then(|| links.iter().filter(|m| matches(**m)).count());
    let ctx = match kind {
        Some(ObjKind::User) => "users",
        Some(ObjKind::Group) => "groups",
        Some(ObjKind::ServicePrincipal) => "servicePrincipals",
        None => "directoryObjects",
    };
    ok(collection_body(r, ctx, count, next, &items))
}

pub(crate) fn count_links(st: &State, r: &GReq, parent: &str, id: &str, rel: &str) -> GResult {
    r.require(GROUP_READ)?;
    if !r.eventual() {
        return Err(GraphError::bad_request(
            "$count is not currently supported.",
        ));
    }
    let d = st.read();
    let links = links_of(&d, parent, id, rel)?;
    Ok(text(
        links.iter().filter(|m| visible_link(&d, r, **m)).count(),
    ))
}

pub(crate) fn member_of(st: &State, r: &GReq, id: &str) -> GResult {
    r.require(USER_READ)?;
    let top = page_size(r, 100, 999)?;
    let d = st.read();
    let ui = d.find_user(id).ok_or_else(|| GraphError::not_found(id))?;
    let me = ObjRef::user(ui);
    let matches =
        |g: usize| d.groups[g].deleted.is_none() && d.groups[g].members.binary_search(&me).is_ok();
    let page = page_indices(r, "memberOf", d.groups.len(), &matches, None, top)?;
    let mask = group_select(r)?;
    let mut items = Vec::new();
    for (k, &g) in page.items.iter().enumerate() {
        if k > 0 {
            items.push(b',');
        }
        write_group(&mut items, &d, g, mask, true);
    }
    ok(collection_body(
        r,
        "directoryObjects",
        None,
        page.next,
        &items,
    ))
}

fn sp_select(r: &GReq) -> Result<Option<Vec<String>>, GraphError> {
    let names = select_names(r);
    if let Some(ns) = &names {
        for n in ns {
            if !SP_PROPS.iter().any(|k| k.eq_ignore_ascii_case(n)) {
                return Err(GraphError::bad_request(format!(
                    "Could not find a property named '{n}' on type 'microsoft.graph.servicePrincipal'."
                )));
            }
        }
    }
    Ok(names)
}

pub(crate) fn assignment_value(
    d: &Directory,
    sp: usize,
    a: &crate::model::AppRoleAssignment,
) -> Value {
    json!({
        "id": a.id,
        "deletedDateTime": null,
        "appRoleId": a.app_role_id,
        "createdDateTime": json::fmt_ts(a.created),
        "principalDisplayName": d.obj_name(a.principal),
        "principalId": d.obj_id(a.principal),
        "principalType": a.principal.kind().name(),
        "resourceDisplayName": d.sps[sp].display_name,
        "resourceId": d.sps[sp].id,
    })
}

pub(crate) fn list_sps(st: &State, r: &GReq) -> GResult {
    r.require(SP_READ)?;
    let select = sp_select(r)?;
    let filter = prep_filter(r, &SP_RULES)?;
    let expand = expand_rel(r, &["appRoleAssignedTo", "owners"], "servicePrincipal")?;
    let top = page_size(r, 100, 999)?;
    let d = st.read();
    let values: Vec<Option<Value>> = d
        .sps
        .iter()
        .map(|s| s.deleted.is_none().then(|| Value::Object(sp_value(&d, s))))
        .collect();
    let matches = |i: usize| match &values[i] {
        None => false,
        Some(v) => filter.as_ref().is_none_or(|f| eval(f, &JsonF(v))),
    };
    let page = page_indices(r, "servicePrincipals", d.sps.len(), &matches, None, top)?;
    let count = (r.advanced() && r.param("skiptoken").is_none())
        .then(|| (0..d.sps.len()).filter(|&i| matches(i)).count());
    let mut items = Vec::new();
    for (k, &i) in page.items.iter().enumerate() {
        if k > 0 {
            items.push(b',');
        }
        let mut m = filter_map(sp_value(&d, &d.sps[i]), select.as_deref());
        match expand.as_deref() {
            Some("appRoleAssignedTo") => {
                let v: Vec<Value> = d.sps[i]
                    .assigned_to
                    .iter()
                    .filter(|a| !d.is_deleted(a.principal))
                    .take(EXPAND_LIMIT)
                    .map(|a| assignment_value(&d, i, a))
                    .collect();
                m.insert("appRoleAssignedTo".into(), Value::Array(v));
            }
            Some(_) => {
                let mut buf = b"{}".to_vec();
                write_links_inline(&mut buf, &d, "owners", &d.sps[i].owners, r);
                let v: Value = serde_json::from_slice(&buf).unwrap_or(Value::Null);
                m.insert("owners".into(), v["owners"].clone());
            }
            None => {}
        }
        items.extend_from_slice(Value::Object(m).to_string().as_bytes());
    }
    ok(collection_body(
        r,
        "servicePrincipals",
        count,
        page.next,
        &items,
    ))
}

pub(crate) fn get_sp(st: &State, r: &GReq, id: &str) -> GResult {
    r.require(SP_READ)?;
    let select = sp_select(r)?;
    let d = st.read();
    let si = d.find_sp(id).ok_or_else(|| GraphError::not_found(id))?;
    let mut m = Map::new();
    m.insert(
        "@odata.context".into(),
        json!(r.context("servicePrincipals/$entity")),
    );
    m.extend(filter_map(sp_value(&d, &d.sps[si]), select.as_deref()));
    ok(Value::Object(m).to_string().into_bytes())
}

pub(crate) fn list_assigned_to(st: &State, r: &GReq, id: &str) -> GResult {
    r.require(&[SP_READ, APP_ROLE_WRITE].concat())?;
    let filter = prep_filter(
        r,
        &FilterRules {
            resource: "AppRoleAssignment",
            default: &[
                "principalId",
                "appRoleId",
                "principalType",
                "resourceId",
                "id",
            ],
            advanced: &["principalDisplayName", "createdDateTime"],
        },
    )?;
    let select = select_names(r);
    let top = page_size(r, 100, 999)?;
    let d = st.read();
    let si = d.find_sp(id).ok_or_else(|| GraphError::not_found(id))?;
    let list = &d.sps[si].assigned_to;
    let values: Vec<Value> = list.iter().map(|a| assignment_value(&d, si, a)).collect();
    let matches = |i: usize| {
        !d.is_deleted(list[i].principal)
            && filter.as_ref().is_none_or(|f| eval(f, &JsonF(&values[i])))
    };
    let page = page_indices(r, "appRoleAssignedTo", list.len(), &matches, None, top)?;
    let mut items = Vec::new();
    for (k, &i) in page.items.iter().enumerate() {
        if k > 0 {
            items.push(b',');
        }
        let m = match values[i].clone() {
            Value::Object(m) => filter_map(m, select.as_deref()),
            _ => Map::new(),
        };
        items.extend_from_slice(Value::Object(m).to_string().as_bytes());
    }
    ok(collection_body(
        r,
        &format!("servicePrincipals('{id}')/appRoleAssignedTo"),
        None,
        page.next,
        &items,
    ))
}

pub(crate) fn get_directory_object(st: &State, r: &GReq, id: &str) -> GResult {
    let d = st.read();
    let obj = uuid::Uuid::parse_str(id)
        .ok()
        .and_then(|u| d.lookup(&u))
        .ok_or_else(|| GraphError::not_found(id))?;
    match obj.kind() {
        ObjKind::User => r.require(USER_READ)?,
        ObjKind::Group => r.require(GROUP_READ)?,
        ObjKind::ServicePrincipal => r.require(SP_READ)?,
    }
    let sel = mixed_select(r)?;
    let mut out = Vec::new();
    write_member(&mut out, &d, obj, &sel);
    ok(entity_body(r, "directoryObjects/$entity", &out))
}

/// `GET /groups/{id}/transitiveMembers`: members of nested groups too, each object once.
pub(crate) fn transitive_members(st: &State, r: &GReq, id: &str) -> GResult {
    r.require(GROUP_READ)?;
    let sel = mixed_select(r)?;
    let top = page_size(r, 100, 999)?;
    let d = st.read();
    let gi = d.find_group(id).ok_or_else(|| GraphError::not_found(id))?;
    let mut seen_groups = vec![gi];
    let mut queue = vec![gi];
    let mut all: Vec<ObjRef> = Vec::new();
    while let Some(g) = queue.pop() {
        for &m in &d.groups[g].members {
            if !visible_link(&d, r, m) {
                continue;
            }
            all.push(m);
            if m.kind() == ObjKind::Group && !seen_groups.contains(&m.idx()) {
                seen_groups.push(m.idx());
                queue.push(m.idx());
            }
        }
    }
    all.sort();
    all.dedup();
    let page = page_indices(r, "transitiveMembers", all.len(), &|_| true, None, top)?;
    let mut items = Vec::new();
    for (k, &i) in page.items.iter().enumerate() {
        if k > 0 {
            items.push(b',');
        }
        write_member(&mut items, &d, all[i], &sel);
    }
    ok(collection_body(
        r,
        "directoryObjects",
        None,
        page.next,
        &items,
    ))
}

/// `GET /users/{id}/appRoleAssignments`: the app roles a user holds directly.
pub(crate) fn user_app_role_assignments(st: &State, r: &GReq, id: &str) -> GResult {
    r.require(USER_READ)?;
    let d = st.read();
    let ui = d.find_user(id).ok_or_else(|| GraphError::not_found(id))?;
    let me = ObjRef::user(ui);
    let mut items = Vec::new();
    for (si, sp) in d.sps.iter().enumerate() {
        if sp.deleted.is_some() {
            continue;
        }
        for a in sp.assigned_to.iter().filter(|a| a.principal == me) {
            if !items.is_empty() {
                items.push(b',');
            }
            items.extend_from_slice(assignment_value(&d, si, a).to_string().as_bytes());
        }
    }
    ok(collection_body(
        r,
        &format!("users('{id}')/appRoleAssignments"),
        None,
        None,
        &items,
    ))
}
