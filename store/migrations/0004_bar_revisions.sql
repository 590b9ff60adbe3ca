-- Which stored version of a bar wins (both variants): a revision that orders streaming panes
-- across process restarts and puts final bars (batch runs, repairs from the tick archive)
-- above every streaming pane. store/revisions.py defines the numbers; the sink never
-- lets a lower revision replace a higher one.
ALTER TABLE bars ADD COLUMN revision bigint NOT NULL DEFAULT 0;
-- Bars stored before revisions existed keep their pane order; a repair makes them final.
UPDATE bars SET revision = pane_index WHERE revision <> pane_index;
ALTER TABLE bars ADD CONSTRAINT bars_revision_not_negative CHECK (revision >= 0);

-- How far each tick archive's bars are final: the streaming pipeline's finaliser resumes from
-- here after a restart, so a stop of any length is repaired once and only once.
CREATE TABLE bar_finalization (
    archive     text        PRIMARY KEY,
    final_until timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
