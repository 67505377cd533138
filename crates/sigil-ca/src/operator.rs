//! Operator commands on the authorities (`sigil authority prepare|activate|taint|revoke`) as a
//! pure function: given the authorities and the time, either the [`Action`]s that carry the
//! command out or why it is refused. Nothing is changed on a refusal; the driver applies the
//! actions exactly as it applies those of [`plan`](crate::lifecycle::plan).
//!
//! The order an operator follows when a key is compromised (as with SPIRE's local authorities):
//! **prepare** a successor (published in the bundle, not signing), **activate** it (the
//! compromised one becomes old), **taint** the old one (agents replace at once everything chained
//! to it), then **revoke** it (out of the bundle: nothing it signed verifies any more). Each step
//! refuses to skip the one before, so the fleet is never left without a trusted signer.

use sigil_spiffe::{AuthorityKind, AuthorityState};

use crate::lifecycle::{Action, AuthorityStatus, newest, ready_to_activate, signing_root};

/// One operator command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Prepare a successor of `kind` now, ahead of the schedule.
    Prepare { kind: AuthorityKind },
    /// Make prepared authority `id` the one that signs; the active one becomes old.
    Activate { id: String },
    /// Mark old authority `id` as compromised: agents re-sign what it signed.
    Taint { id: String },
    /// Remove tainted authority `id` from the trust bundle.
    Revoke { id: String },
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("authority `{0}` not found")]
    UnknownAuthority(String),
    #[error("a prepared {kind} authority (`{id}`) already exists; activate it first")]
    AlreadyPrepared { kind: AuthorityKind, id: String },
    #[error("no active root can sign a new intermediate")]
    NoSigningRoot,
    #[error("authority `{id}` is revoked and can never be activated")]
    ActivateRevoked { id: String },
    #[error(
        "authority `{id}` is {state}, not prepared; only a prepared authority can be activated"
    )]
    NotPrepared { id: String, state: AuthorityState },
    #[error(
        "authority `{id}` cannot be activated: it has expired, its key is missing, most of its life has passed, or its root is tainted"
    )]
    NotReady { id: String },
    #[error(
        "authority `{id}` was prepared this very second and is not yet published; try again in a second"
    )]
    NotYetPublished { id: String },
    #[error(
        "authority `{id}` is the active {kind} authority; prepare and activate a successor before tainting it"
    )]
    TaintActive { id: String, kind: AuthorityKind },
    #[error("authority `{id}` is {state}; only an old authority can be tainted")]
    NotOld { id: String, state: AuthorityState },
    #[error(
        "authority `{id}` is {state}; only a tainted authority can be revoked (taint it first)"
    )]
    NotTainted { id: String, state: AuthorityState },
}

/// The actions that carry out `command` on `authorities` at `now`, or why it is refused.
pub fn command(
    authorities: &[AuthorityStatus],
    command: &Command,
    now: i64,
) -> Result<Vec<Action>, CommandError> {
    let find = |id: &str| {
        authorities
            .iter()
            .find(|a| a.id == id)
            .ok_or_else(|| CommandError::UnknownAuthority(id.to_owned()))
    };
    match command {
        Command::Prepare { kind } => {
            let kind = *kind;
            if let Some(prepared) = newest(authorities.iter().filter(|a| {
                a.kind == kind && a.state == AuthorityState::Prepared && a.not_after > now
            })) {
                return Err(CommandError::AlreadyPrepared {
                    kind,
                    id: prepared.id.clone(),
                });
            }
            let issuer_id = match kind {
                AuthorityKind::X509Intermediate => Some(
                    signing_root(authorities, now)
                        .ok_or(CommandError::NoSigningRoot)?
                        .id
                        .clone(),
                ),
                AuthorityKind::X509Root | AuthorityKind::Jwt => None,
            };
            Ok(vec![Action::Prepare { kind, issuer_id }])
        }
        Command::Activate { id } => {
            let next = find(id)?;
            match next.state {
                AuthorityState::Prepared => {}
                AuthorityState::Revoked => {
                    return Err(CommandError::ActivateRevoked { id: id.clone() });
                }
                state => {
                    return Err(CommandError::NotPrepared {
                        id: id.clone(),
                        state,
                    });
                }
            }
            if !ready_to_activate(next, authorities, now) {
                return Err(CommandError::NotReady { id: id.clone() });
            }
            if next.not_before >= now {
                return Err(CommandError::NotYetPublished { id: id.clone() });
            }
            let mut actions = vec![Action::Activate { id: id.clone() }];
            actions.extend(
                authorities
                    .iter()
                    .filter(|a| a.kind == next.kind && a.state == AuthorityState::Active)
                    .map(|a| Action::Retire { id: a.id.clone() }),
            );
            Ok(actions)
        }
        Command::Taint { id } => {
            let target = find(id)?;
            match target.state {
                AuthorityState::Old => Ok(vec![Action::Taint { id: id.clone() }]),
                AuthorityState::Active => Err(CommandError::TaintActive {
                    id: id.clone(),
                    kind: target.kind,
                }),
                state => Err(CommandError::NotOld {
                    id: id.clone(),
                    state,
                }),
            }
        }
        Command::Revoke { id } => {
            let target = find(id)?;
            match target.state {
                AuthorityState::Tainted => Ok(vec![Action::Revoke { id: id.clone() }]),
                state => Err(CommandError::NotTainted {
                    id: id.clone(),
                    state,
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::plan;
    use crate::lifecycle::tests::{LIFE, T0, settled as world, status};

    fn set_state(world: &mut [AuthorityStatus], id: &str, state: AuthorityState) {
        for a in world.iter_mut().filter(|a| a.id == id) {
            a.state = state;
        }
    }

    #[test]
    fn prepare_names_the_signing_root_for_intermediates_and_refuses_a_second() {
        let mut w = world();
        assert_eq!(
            command(
                &w,
                &Command::Prepare {
                    kind: AuthorityKind::X509Intermediate
                },
                T0 + 1
            ),
            Ok(vec![Action::Prepare {
                kind: AuthorityKind::X509Intermediate,
                issuer_id: Some("root".into())
            }])
        );
        w.push(status(
            "jwt2",
            AuthorityKind::Jwt,
            AuthorityState::Prepared,
            T0 + 1,
        ));
        assert_eq!(
            command(
                &w,
                &Command::Prepare {
                    kind: AuthorityKind::Jwt
                },
                T0 + 2
            ),
            Err(CommandError::AlreadyPrepared {
                kind: AuthorityKind::Jwt,
                id: "jwt2".into()
            })
        );
    }

    #[test]
    fn activate_retires_the_active_one_and_the_plan_then_rests() {
        let mut w = world();
        w.push(status(
            "jwt2",
            AuthorityKind::Jwt,
            AuthorityState::Prepared,
            T0 + 10,
        ));
        let id = "jwt2".to_owned();
        assert_eq!(
            command(&w, &Command::Activate { id: id.clone() }, T0 + 10),
            Err(CommandError::NotYetPublished { id: id.clone() })
        );
        let actions = command(&w, &Command::Activate { id: id.clone() }, T0 + 11).unwrap();
        assert_eq!(
            actions,
            [
                Action::Activate { id: id.clone() },
                Action::Retire { id: "jwt".into() }
            ]
        );
        set_state(&mut w, "jwt2", AuthorityState::Active);
        set_state(&mut w, "jwt", AuthorityState::Old);
        assert_eq!(plan(&w, T0 + 11), [], "the plan undoes a forced activation");
    }

    #[test]
    fn activation_is_refused_for_revoked_unprepared_and_unknown_authorities() {
        let mut w = world();
        w.push(status(
            "gone",
            AuthorityKind::Jwt,
            AuthorityState::Revoked,
            T0,
        ));
        let activate = |id: &str| Command::Activate { id: id.into() };
        assert_eq!(
            command(&w, &activate("gone"), T0 + 1),
            Err(CommandError::ActivateRevoked { id: "gone".into() })
        );
        assert_eq!(
            command(&w, &activate("jwt"), T0 + 1),
            Err(CommandError::NotPrepared {
                id: "jwt".into(),
                state: AuthorityState::Active
            })
        );
        assert_eq!(
            command(&w, &activate("nope"), T0 + 1),
            Err(CommandError::UnknownAuthority("nope".into()))
        );
        let mut stale = status("stale", AuthorityKind::Jwt, AuthorityState::Prepared, T0);
        stale.key_available = false;
        w.push(stale);
        assert_eq!(
            command(&w, &activate("stale"), T0 + 1),
            Err(CommandError::NotReady { id: "stale".into() })
        );
    }

    #[test]
    fn taint_needs_an_old_authority_and_revoke_a_tainted_one() {
        let mut w = world();
        assert_eq!(
            command(&w, &Command::Taint { id: "jwt".into() }, T0 + 1),
            Err(CommandError::TaintActive {
                id: "jwt".into(),
                kind: AuthorityKind::Jwt
            })
        );
        assert_eq!(
            command(&w, &Command::Revoke { id: "jwt".into() }, T0 + 1),
            Err(CommandError::NotTainted {
                id: "jwt".into(),
                state: AuthorityState::Active
            })
        );
        w.push(status("old", AuthorityKind::Jwt, AuthorityState::Old, T0));
        assert_eq!(
            command(&w, &Command::Taint { id: "old".into() }, T0 + 1),
            Ok(vec![Action::Taint { id: "old".into() }])
        );
        set_state(&mut w, "old", AuthorityState::Tainted);
        assert_eq!(
            command(&w, &Command::Taint { id: "old".into() }, T0 + 1),
            Err(CommandError::NotOld {
                id: "old".into(),
                state: AuthorityState::Tainted
            })
        );
        assert_eq!(
            command(&w, &Command::Revoke { id: "old".into() }, T0 + 1),
            Ok(vec![Action::Revoke { id: "old".into() }])
        );
    }

    /// A tainted root: the intermediate it signed stops signing at once, and its replacement is
    /// issued under the new active root.
    #[test]
    fn an_intermediate_under_a_tainted_root_is_replaced_under_the_active_root() {
        let mut w = world();
        set_state(&mut w, "root", AuthorityState::Tainted);
        let mut root2 = status("root2", AuthorityKind::X509Root, AuthorityState::Active, T0);
        root2.not_after = T0 + 100 * LIFE;
        w.push(root2);
        assert_eq!(
            plan(&w, T0 + 1),
            [Action::Prepare {
                kind: AuthorityKind::X509Intermediate,
                issuer_id: Some("root2".into())
            }]
        );
        let mut int2 = status(
            "int2",
            AuthorityKind::X509Intermediate,
            AuthorityState::Prepared,
            T0 + 1,
        );
        int2.issuer_id = Some("root2".into());
        w.push(int2);
        // The old intermediate cannot sign any more: its successor is activated at once, even
        // in the second it was prepared (intermediates travel in chains, not in the bundle).
        assert_eq!(
            plan(&w, T0 + 1),
            [
                Action::Activate { id: "int2".into() },
                Action::Retire { id: "int".into() }
            ]
        );
        // And a prepared intermediate under the tainted root is never activated.
        let mut w2 = world();
        set_state(&mut w2, "root", AuthorityState::Tainted);
        let mut int_bad = status(
            "int-bad",
            AuthorityKind::X509Intermediate,
            AuthorityState::Prepared,
            T0,
        );
        int_bad.issuer_id = Some("root".into());
        w2.push(int_bad);
        assert_eq!(
            command(
                &w2,
                &Command::Activate {
                    id: "int-bad".into()
                },
                T0 + 1
            ),
            Err(CommandError::NotReady {
                id: "int-bad".into()
            })
        );
    }
}
