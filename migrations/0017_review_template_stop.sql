-- A recurring access review can be stopped: its template starts no further campaigns (its
-- schedule is deleted, and a template job already queued finds it stopped); the campaigns it
-- started run on to their deadlines.

ALTER TABLE review_templates ADD COLUMN stopped_at timestamptz;
ALTER TABLE review_templates ADD COLUMN stopped_by text;
CREATE INDEX review_campaigns_template_idx ON review_campaigns (org_id, template_id) WHERE template_id IS NOT NULL;
