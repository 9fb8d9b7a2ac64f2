-- Branches of a `parallel` group and items of a fan-out are steps of their own: `parent` is
-- the id of the step they belong to, `item` (JSON) the fan-out item an item runs for.
ALTER TABLE run_steps ADD COLUMN parent TEXT;
ALTER TABLE run_steps ADD COLUMN item TEXT;
