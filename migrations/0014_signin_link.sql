-- "Link your Microsoft account": a signed-in person's own round trip to Microsoft. The state
-- carries who asked, so that the callback links the verified Entra account to that person
-- (who must still be the one signed in in that browser) instead of signing anyone in.
ALTER TABLE signin_states
    ADD COLUMN link_org_id  uuid REFERENCES orgs(id) ON DELETE CASCADE,
    ADD COLUMN link_user_id uuid REFERENCES users(id) ON DELETE CASCADE,
    ADD CONSTRAINT signin_states_link_both CHECK ((link_org_id IS NULL) = (link_user_id IS NULL));
