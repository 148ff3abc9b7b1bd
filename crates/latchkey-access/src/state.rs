//! The request state machine: which event may happen in which state, and where it leads.
//! Every change of a request goes through [`next`]; anything not in the table is refused.

use serde::Serialize;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    Approved,
    Provisioning,
    /// Verified in the tenant; the access window runs.
    Active,
    /// Removed at the end of its window (verified).
    Expired,
    /// Removed early: released by the holder or revoked by an administrator (verified).
    Revoked,
    Denied,
    Cancelled,
    TimedOut,
    Failed,
}

impl State {
    pub const ALL: [State; 10] = [
        State::Pending,
        State::Approved,
        State::Provisioning,
        State::Active,
        State::Expired,
        State::Revoked,
        State::Denied,
        State::Cancelled,
        State::TimedOut,
        State::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Provisioning => "provisioning",
            State::Active => "active",
            State::Expired => "expired",
            State::Revoked => "revoked",
            State::Denied => "denied",
            State::Cancelled => "cancelled",
            State::TimedOut => "timed_out",
            State::Failed => "failed",
        }
    }

    /// Words for people.
    pub fn label(self) -> &'static str {
        match self {
            State::Pending => "Waiting for approval",
            State::Approved => "Approved",
            State::Provisioning => "Being granted",
            State::Active => "Active",
            State::Expired => "Expired",
            State::Revoked => "Removed early",
            State::Denied => "Denied",
            State::Cancelled => "Cancelled",
            State::TimedOut => "Timed out",
            State::Failed => "Failed",
        }
    }

    pub fn is_final(self) -> bool {
        !matches!(
            self,
            State::Pending | State::Approved | State::Provisioning | State::Active
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown access request state {s:?}"))
    }
}

/// What can happen to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// An approval stage other than the last one has its approvals: the next one begins.
    StageApproved,
    /// The last approval stage approved (or a rule approved it automatically).
    Approve,
    Deny,
    /// The requester withdrew it before a decision.
    Cancel,
    /// Nobody decided in time.
    TimeOut,
    /// The grant was handed to provisioning.
    StartProvisioning,
    /// Provisioning read the grant back from the tenant.
    Verified,
    /// Provisioning failed (refused, Graph error, not verified) or could not start.
    ProvisioningFailed,
    /// The removal (expiry, release or revoke) was asked of provisioning; the access stays
    /// active until the removal is verified.
    StartRemoval,
    /// The holder asked for more time, or that ask was approved, denied or timed out.
    Extension,
    /// The removal at the end of the window was verified.
    ExpiryVerified,
    /// An early removal (release, revoke) was verified.
    RevocationVerified,
}

impl Event {
    pub const ALL: [Event; 12] = [
        Event::StageApproved,
        Event::Approve,
        Event::Deny,
        Event::Cancel,
        Event::TimeOut,
        Event::StartProvisioning,
        Event::Verified,
        Event::ProvisioningFailed,
        Event::StartRemoval,
        Event::Extension,
        Event::ExpiryVerified,
        Event::RevocationVerified,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::StageApproved => "approve a stage",
            Event::Approve => "approve",
            Event::Deny => "deny",
            Event::Cancel => "cancel",
            Event::TimeOut => "time_out",
            Event::StartProvisioning => "start_provisioning",
            Event::Verified => "verified",
            Event::ProvisioningFailed => "provisioning_failed",
            Event::StartRemoval => "start_removal",
            Event::Extension => "extension",
            Event::ExpiryVerified => "expiry_verified",
            Event::RevocationVerified => "revocation_verified",
        }
    }
}

/// An event the state does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a request that is {from} cannot {}", event.as_str().replace('_', " "))]
pub struct IllegalTransition {
    pub from: State,
    pub event: Event,
}

/// The whole table. Self-loops on `Active` are the events that do not change the state but
/// are still recorded (removal started, extension asked or decided).
pub fn next(from: State, event: Event) -> Result<State, IllegalTransition> {
    use Event as E;
    use State as S;
    let to = match (from, event) {
        (S::Pending, E::StageApproved) => S::Pending,
        (S::Pending, E::Approve) => S::Approved,
        (S::Pending, E::Deny) => S::Denied,
        (S::Pending, E::Cancel) => S::Cancelled,
        (S::Pending, E::TimeOut) => S::TimedOut,
        (S::Approved, E::StartProvisioning) => S::Provisioning,
        (S::Approved, E::ProvisioningFailed) => S::Failed,
        (S::Provisioning, E::Verified) => S::Active,
        (S::Provisioning, E::ProvisioningFailed) => S::Failed,
        (S::Active, E::StartRemoval) => S::Active,
        (S::Active, E::Extension) => S::Active,
        (S::Active, E::ExpiryVerified) => S::Expired,
        (S::Active, E::RevocationVerified) => S::Revoked,
        _ => return Err(IllegalTransition { from, event }),
    };
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expected table, written out independently of `next`'s match.
    const ALLOWED: &[(State, Event, State)] = &[
        (State::Pending, Event::StageApproved, State::Pending),
        (State::Pending, Event::Approve, State::Approved),
        (State::Pending, Event::Deny, State::Denied),
        (State::Pending, Event::Cancel, State::Cancelled),
        (State::Pending, Event::TimeOut, State::TimedOut),
        (
            State::Approved,
            Event::StartProvisioning,
            State::Provisioning,
        ),
        (State::Approved, Event::ProvisioningFailed, State::Failed),
        (State::Provisioning, Event::Verified, State::Active),
        (
            State::Provisioning,
            Event::ProvisioningFailed,
            State::Failed,
        ),
        (State::Active, Event::StartRemoval, State::Active),
        (State::Active, Event::Extension, State::Active),
        (State::Active, Event::ExpiryVerified, State::Expired),
        (State::Active, Event::RevocationVerified, State::Revoked),
    ];

    #[test]
    fn every_state_and_event_pair_is_allowed_exactly_as_the_table_says() {
        let mut checked = 0;
        for from in State::ALL {
            for event in Event::ALL {
                let expected = ALLOWED
                    .iter()
                    .find(|(f, e, _)| *f == from && *e == event)
                    .map(|(_, _, to)| *to);
                match (next(from, event), expected) {
                    (Ok(to), Some(want)) => assert_eq!(to, want, "{from} + {event:?}"),
                    (Err(e), None) => {
                        assert_eq!(e, IllegalTransition { from, event });
                        assert!(e.to_string().contains(from.as_str()));
                    }
                    (got, want) => panic!("{from} + {event:?}: got {got:?}, want {want:?}"),
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 120);
    }

    #[test]
    fn final_states_allow_nothing() {
        for from in State::ALL.into_iter().filter(|s| s.is_final()) {
            for event in Event::ALL {
                assert!(next(from, event).is_err(), "{from} + {event:?}");
            }
        }
    }

    #[test]
    fn states_round_trip_through_text() {
        for s in State::ALL {
            assert_eq!(s.as_str().parse::<State>().unwrap(), s);
        }
        assert!("granted".parse::<State>().is_err());
    }
}
