-- The URL that answered an http step after the redirects it was allowed to follow (masked).
ALTER TABLE step_attempts ADD COLUMN final_url TEXT;
