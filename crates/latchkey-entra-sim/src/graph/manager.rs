//! `PUT /users/{id}/manager/$ref`: setting a user's manager, as account creation does.

use serde_json::Value;

use super::perms::*;
use super::write::ref_target;
use super::{GReq, GResult, GraphError, no_content};
use crate::model::ObjRef;

pub(crate) fn set_manager(st: &crate::server::State, r: &GReq, id: &str) -> GResult {
    r.require(USER_WRITE)?;
    let body: Value = r.json_body()?;
    let target = ref_target(&body)?;
    let mut d = st.write();
    let ui = d.find_user(id).ok_or_else(|| GraphError::not_found(id))?;
    let mi = match d.find_user(&target) {
        Some(mi) => mi,
        None => return Err(GraphError::not_found(&target)),
    };
    if mi == ui {
        return Err(GraphError::bad_request(
            "A user cannot be their own manager.",
        ));
    }
    d.users[ui].manager = Some(mi as u32);
    d.touch_user(ui);
    let t = d.target(ObjRef::user(ui));
    d.audit(
        "UserManagement",
        "Set manager",
        "Update",
        r.actor(),
        vec![t],
    );
    Ok(no_content())
}
