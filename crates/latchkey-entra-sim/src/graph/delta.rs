//! `users/delta` and `groups/delta`: a full first round, then changes since the last `@odata.deltaLink`
//! (`@removed` for deletions, `members@delta` for membership changes).

use std::collections::HashMap;

use super::out::*;
use super::perms::*;
use super::read::{bad_token, ok};
use super::{GReq, GResult, GraphError, Ver};
use crate::json;
use crate::model::{Directory, ObjKind, ObjRef};
use crate::odata::{decode_token, encode_token, parse_select};
use crate::server::State;

fn max_page(r: &GReq) -> usize {
    r.headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .map(str::trim)
                .find_map(|p| p.strip_prefix("odata.maxpagesize="))
                .and_then(|n| n.trim().parse::<usize>().ok())
        })
        .map(|n| n.clamp(1, 999))
        .unwrap_or(100)
}

struct Round {
    since: u64,
    round: u64,
    cursor: u64,
    offset: u64,
    mask: u64,
    members: bool,
}

fn state(
    r: &GReq,
    kind: &str,
    d: &Directory,
    initial_mask: impl Fn() -> Result<(u64, bool), GraphError>,
) -> Result<Round, GraphError> {
    if let Some(t) = r.param("skiptoken") {
        let f = decode_token(kind, t)
            .filter(|f| f.len() == 6)
            .ok_or_else(bad_token)?;
        return Ok(Round {
            since: f[0],
            round: f[1],
            cursor: f[2],
            offset: f[3],
            mask: f[4],
            members: f[5] == 1,
        });
    }
    if let Some(t) = r.param("deltatoken") {
        let f = decode_token(&format!("{kind}T"), t)
            .filter(|f| f.len() == 3)
            .ok_or_else(|| {
                GraphError::new(
                    http::StatusCode::BAD_REQUEST,
                    "SyncStateNotFound",
                    "The sync state generation is not found. Please restart the synchronization.",
                )
            })?;
        return Ok(Round {
            since: f[0],
            round: d.seq,
            cursor: 0,
            offset: 0,
            mask: f[1],
            members: f[2] == 1,
        });
    }
    let (mask, members) = initial_mask()?;
    Ok(Round {
        since: 0,
        round: d.seq,
        cursor: 0,
        offset: 0,
        mask,
        members,
    })
}

fn link(r: &GReq, what: &str, param: &str, token: &str) -> String {
    format!(
        "{}/{}/{}/delta?{}={}",
        r.base,
        r.ver.as_str(),
        what,
        param,
        token
    )
}

fn finish(
    r: &GReq,
    what: &str,
    kind: &str,
    items: &[u8],
    next: Option<[u64; 6]>,
    round: &Round,
) -> GResult {
    let mut out = Vec::with_capacity(items.len() + 256);
    out.extend_from_slice(b"{\"@odata.context\":");
    json::str(&mut out, &r.context(what));
    match next {
        Some(f) => {
            out.extend_from_slice(b",\"@odata.nextLink\":");
            json::str(
                &mut out,
                &link(r, what, "$skiptoken", &encode_token(kind, &f)),
            );
        }
        None => {
            out.extend_from_slice(b",\"@odata.deltaLink\":");
            let t = encode_token(
                &format!("{kind}T"),
                &[round.round, round.mask, round.members as u64],
            );
            json::str(&mut out, &link(r, what, "$deltatoken", &t));
        }
    }
    out.extend_from_slice(b",\"value\":[");
    out.extend_from_slice(items);
    out.extend_from_slice(b"]}");
    ok(out)
}

fn removed(out: &mut Vec<u8>, id: &uuid::Uuid) {
    out.extend_from_slice(b"{\"id\":");
    json::uuid(out, id);
    out.extend_from_slice(b",\"@removed\":{\"reason\":\"changed\"}}");
}

/// Marks a users/delta round that selected `manager` (a navigation property, answered as
/// `manager@delta`); above every property bit.
const MANAGER_BIT: u64 = 1 << 63;

/// `$select` of users/delta: properties plus, optionally, `manager`.
fn user_delta_select(r: &GReq) -> Result<u64, GraphError> {
    let Some(raw) = r.param("select") else {
        return Ok(user_select(r)? | 1);
    };
    let mut manager = false;
    let rest: Vec<&str> = raw
        .split(',')
        .map(str::trim)
        .filter(|p| {
            let m = p.eq_ignore_ascii_case("manager");
            manager |= m;
            !m
        })
        .collect();
    let mask =
        parse_select(&rest.join(","), USER_PROPS, "user").map_err(GraphError::bad_request)?;
    Ok(mask | 1 | if manager { MANAGER_BIT } else { 0 })
}

/// Users whose manager changed after `since`, with the manager a client synced up to `since`
/// knew (the `previous` of the first change).
fn manager_changes(d: &Directory, since: u64) -> HashMap<u32, Option<u32>> {
    let start = d.manager_log.partition_point(|c| c.seq <= since);
    let mut out = HashMap::new();
    for c in &d.manager_log[start..] {
        out.entry(c.user).or_insert(c.previous);
    }
    out
}

/// Appends `"manager@delta":[…]` to a user object just written (before its closing brace): the
/// current manager, or the one a client knew marked `@removed`. Nothing when there is nothing
/// to say (absent means unchanged, as on Graph).
fn write_manager_delta(out: &mut Vec<u8>, d: &Directory, ui: usize, known: Option<Option<u32>>) {
    let (id, removed) = match (d.live_manager(ui), known) {
        (Some(m), _) => (m, false),
        (None, Some(Some(prev))) => (prev, true),
        (None, _) => return,
    };
    out.pop();
    out.extend_from_slice(
        b",\"manager@delta\":[{\"@odata.type\":\"#microsoft.graph.user\",\"id\":",
    );
    json::uuid(out, &d.users[id as usize].id);
    if removed {
        out.extend_from_slice(b",\"@removed\":{\"reason\":\"deleted\"}");
    }
    out.extend_from_slice(b"}]}");
}

pub(crate) fn users_delta(st: &State, r: &GReq) -> GResult {
    r.require(USER_READ)?;
    let d = st.read();
    let round = state(r, "udelta", &d, || Ok((user_delta_select(r)?, false)))?;
    let manager = round.mask & MANAGER_BIT != 0;
    let props = round.mask & !MANAGER_BIT;
    let changed_managers = if manager && round.since > 0 {
        manager_changes(&d, round.since)
    } else {
        HashMap::new()
    };
    if round.mask & (1 << U_SIGNIN) != 0 {
        return Err(GraphError::bad_request(
            "The property 'signInActivity' is not supported on delta queries.",
        ));
    }
    let page = max_page(r);
    let mut items = Vec::new();
    let mut n = 0;
    let mut next = None;
    let mut i = round.cursor as usize;
    while i < d.users.len() {
        let u = &d.users[i];
        let include = if round.since == 0 {
            u.deleted.is_none()
        } else {
            u.seq > round.since
        };
        if include {
            if n == page {
                next = Some([round.since, round.round, i as u64, 0, round.mask, 0]);
                break;
            }
            if n > 0 {
                items.push(b',');
            }
            if u.deleted.is_some() {
                removed(&mut items, &u.id);
            } else {
                write_user(&mut items, &d, i, props, false);
                if manager {
                    let known = if round.since == 0 {
                        // A first round lists every manager.
                        Some(None)
                    } else {
                        changed_managers.get(&(i as u32)).copied()
                    };
                    write_manager_delta(&mut items, &d, i, known);
                }
            }
            n += 1;
        }
        i += 1;
    }
    finish(r, "users", "udelta", &items, next, &round)
}

fn group_delta_select(r: &GReq) -> Result<(u64, bool), GraphError> {
    match r.param("select") {
        None => Ok((group_default(r.ver), false)),
        Some(s) => {
            let members = s
                .split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("members"));
            let rest: Vec<&str> = s
                .split(',')
                .map(str::trim)
                .filter(|p| !p.eq_ignore_ascii_case("members"))
                .collect();
            let mask = parse_select(&rest.join(","), GROUP_PROPS, "group")
                .map_err(GraphError::bad_request)?;
            Ok((mask | 1, members))
        }
    }
}

fn member_ref(out: &mut Vec<u8>, d: &Directory, m: ObjRef, removed: bool) {
    out.extend_from_slice(b"{\"@odata.type\":");
    json::str(out, m.kind().odata_type());
    out.extend_from_slice(b",\"id\":");
    json::uuid(out, &d.obj_id(m));
    if removed {
        out.extend_from_slice(b",\"@removed\":{\"reason\":\"deleted\"}");
    }
    out.push(b'}');
}

pub(crate) fn groups_delta(st: &State, r: &GReq) -> GResult {
    r.require(GROUP_READ)?;
    let d = st.read();
    let round = state(r, "gdelta", &d, || group_delta_select(r))?;
    let page = max_page(r);
    // A big group's members are split over several appearances of the group, as Graph does.
    let chunk = (page * 10).min(1000);
    let visible = |m: &ObjRef| {
        (r.ver != Ver::V1 || m.kind() != ObjKind::ServicePrincipal) && !d.is_deleted(*m)
    };
    // Net membership changes per group since the token.
    let mut changes: HashMap<u32, Vec<(ObjRef, bool)>> = HashMap::new();
    if round.since > 0 && round.members {
        let start = d.member_log.partition_point(|c| c.seq <= round.since);
        for c in &d.member_log[start..] {
            let list = changes.entry(c.group).or_default();
            list.retain(|(m, _)| *m != c.member);
            list.push((c.member, c.added));
        }
    }
    let mut items = Vec::new();
    let mut n = 0;
    let mut next = None;
    let mut g = round.cursor as usize;
    let mut offset = round.offset as usize;
    while g < d.groups.len() {
        let grp = &d.groups[g];
        let include = if round.since == 0 {
            grp.deleted.is_none()
        } else {
            grp.seq > round.since
        };
        if !include {
            g += 1;
            offset = 0;
            continue;
        }
        if n == page {
            next = Some([
                round.since,
                round.round,
                g as u64,
                offset as u64,
                round.mask,
                round.members as u64,
            ]);
            break;
        }
        if n > 0 {
            items.push(b',');
        }
        n += 1;
        if grp.deleted.is_some() {
            removed(&mut items, &grp.id);
            g += 1;
            continue;
        }
        write_group(&mut items, &d, g, round.mask, false);
        let mut advance = true;
        if round.members {
            items.pop();
            items.extend_from_slice(b",\"members@delta\":[");
            if round.since == 0 {
                let all: Vec<ObjRef> = grp.members.iter().copied().filter(|m| visible(m)).collect();
                let end = (offset + chunk).min(all.len());
                for (k, m) in all[offset.min(end)..end].iter().enumerate() {
                    if k > 0 {
                        items.push(b',');
                    }
                    member_ref(&mut items, &d, *m, false);
                }
                if end < all.len() {
                    offset = end;
                    advance = false;
                }
            } else if let Some(list) = changes.get(&(g as u32)) {
                let mut k = 0;
                for (m, added) in list {
                    if r.ver == Ver::V1 && m.kind() == ObjKind::ServicePrincipal {
                        continue;
                    }
                    if k > 0 {
                        items.push(b',');
                    }
                    member_ref(&mut items, &d, *m, !added);
                    k += 1;
                }
            }
            items.extend_from_slice(b"]}");
        }
        if advance {
            g += 1;
            offset = 0;
        }
    }
    finish(r, "groups", "gdelta", &items, next, &round)
}
