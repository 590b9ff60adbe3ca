-- The API's dead-letter alert (/v1/alerts, alphastream_dead_letters_recent) counts the letters
-- recorded in a recent window; without this index each poll scans the whole table, and a
-- spike of dead letters is exactly when the table grows.
CREATE INDEX dead_letters_recorded_at ON dead_letters (recorded_at);
