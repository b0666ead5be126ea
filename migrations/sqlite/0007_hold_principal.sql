-- Who placed a hold (the caller's principal, e.g. `mcp/user:<id>` or `key:<id>`): only the same
-- principal may capture or release it, so a user cannot release the hold a paid tool placed for
-- them while the tool's work is under way. Holds from before this column settle as before.
ALTER TABLE credit_holds ADD COLUMN placed_by TEXT;
